#!/bin/sh
# The test host's watchdog agent: busybox sh in the initramfs, outside the chroot, so it still
# answers when the command's tools are stuck. testhost.py writes "@@testhost-dump-$NONCE@@" to
# the second serial port when the command makes no progress; the answer goes back on that port,
# streamed (a partial answer still helps) and closed by "@@testhost-dump-end-$NONCE@@":
#   1. the command's process tree and each thread's kernel stack (cheap, taken first so they
#      show the hang before anything below disturbs it),
#   2. FLICK_DUMP_SIGNAL (from each process's environment) to the processes that catch it: flick
#      then writes its vCPU state to its stderr, i.e. the console, as "flick-dump:" lines,
#   3. each process's thread stacks (eu-stack, else gdb), leaves first: they are slow under TCG
#      and the hung work is usually at the bottom of the tree.
#
#   NONCE=... testhost_agent.sh PORT ROOT PIDFILE
# PORT: the serial device; ROOT: where eu-stack and gdb are (chroot); PIDFILE: holds the pid of
# the command's top process, written when it starts.
port=$1 root=$2 pidfile=$3
request="@@testhost-dump-$NONCE@@"

procs() {  # "pid ppid state" of every process; one may exit while read, hence 2>/dev/null
  for d in /proc/[0-9]*; do
    ppid='' state=''
    { while read -r k v _; do
        case $k in State:) state=$v ;; PPid:) ppid=$v; break ;; esac
      done <"$d/status"; } 2>/dev/null
    [ -n "$ppid" ] && echo "${d#/proc/} $ppid $state"
  done
}

tree() {  # "pid ppid state" of $1 and its descendants, by pid
  procs | awk -v top="$1" '{ parent[$1] = $2; line[$1] = $0 }
    END { keep[top] = 1
          do { more = 0
               for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; more = 1 }
          } while (more)
          for (p in keep) if (p in line) print line[p] }' | sort -n
}

environ_var() {  # value of variable $2 in process $1's environment
  tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n "s/^$2=//p"
}

catches() {  # true if process $1 has a handler for signal number $2 (1-32)
  cgt=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null)
  [ -n "$cgt" ] && [ "$2" -le 32 ] && [ $(( (0x${cgt#????????} >> ($2 - 1)) & 1 )) = 1 ]
}

dump() {
  top=$(cat "$pidfile" 2>/dev/null)
  if [ -z "$top" ]; then echo "no command pid in $pidfile"; return; fi
  lines=$(tree "$top")
  pids=$(echo "$lines" | cut -d' ' -f1)
  echo "== process tree of the command (pid ppid state wchan command)"
  echo "$lines" | while read -r pid ppid state; do
    wchan=$(cat "/proc/$pid/wchan" 2>/dev/null)
    echo "$pid $ppid $state ${wchan:--} $(tr '\0\n' '  ' <"/proc/$pid/cmdline" 2>/dev/null)"
  done
  for pid in $pids; do
    for t in /proc/"$pid"/task/*; do
      echo "== kernel stack of pid $pid thread ${t##*/} ($(cat "$t/comm" 2>/dev/null))"
      cat "$t/stack" 2>/dev/null
    done
  done

  # Only to processes whose environment asks for it: a handler alone may mean something else.
  sent=''
  for pid in $pids; do
    sig=$(environ_var "$pid" FLICK_DUMP_SIGNAL)
    sig=${sig#SIG}
    [ -n "$sig" ] && num=$(kill -l "$sig" 2>/dev/null) && catches "$pid" "$num" || continue
    echo "== sent SIG$sig to pid $pid (its FLICK_DUMP_SIGNAL; its answer goes to the console)"
    kill -s "$sig" "$pid" && sent=1
  done
  # The answer goes out on the console meanwhile; testhost.py stops reading at our end marker.
  if [ -n "$sent" ]; then sleep 3; else echo "== no process catches its FLICK_DUMP_SIGNAL"; fi

  for pid in $(echo "$pids" | sort -rn); do
    [ -d "/proc/$pid" ] || continue
    echo "== thread stacks of pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null))"
    if [ -x "$root/usr/bin/eu-stack" ] && timeout 20 chroot "$root" eu-stack -p "$pid" 2>&1; then
      continue
    elif [ -x "$root/usr/bin/gdb" ]; then
      timeout 30 chroot "$root" gdb -batch -nx -p "$pid" -ex 'thread apply all bt' 2>&1
    else
      echo "neither eu-stack nor gdb in $root (scripts/install-deps.sh installs them)"
    fi
  done
}

# raw: requests arrive unchanged and nothing is echoed back; clocal: opening needs no carrier.
stty -F "$port" raw -echo clocal 115200 2>/dev/null
while read -r line; do
  case $line in *"$request"*) dump; echo "@@testhost-dump-end-$NONCE@@" ;; esac
done <"$port" >"$port" 2>&1
