#!/bin/sh
# /init.user of the test host initramfs (modules are already loaded by the generated /init).
# Mounts this machine's root (9p "hostroot", read-only), the control share ("ctl": command,
# settings, exit status) and the writable work share ("work"), then runs the command chrooted
# next to the watchdog agent (testhost_agent.sh).
fail() { echo "testhost-init: $*" >/dev/console; poweroff -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /ctl /hostroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /ctl || fail "cannot mount ctl"
. /ctl/settings  # NONCE, WORKDIR, ROOT_CACHE

R=/hostroot
mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,ro,cache=$ROOT_CACHE" hostroot $R \
  || fail "cannot mount the host root"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
for d in /tmp /run /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R$d; done
mkdir -p $R/run/testhost
mount --bind /ctl $R/run/testhost
if [ -n "$WORKDIR" ]; then
  mkdir -p "$R$WORKDIR" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap work "$R$WORKDIR" \
    || fail "cannot mount the work share on $WORKDIR"
fi
ip link set lo up 2>/dev/null

# The watchdog agent answers testhost.py's dump requests on the second serial port.
NONCE=$NONCE sh /bin/testhost_agent.sh /dev/ttyS1 $R /command.pid </dev/null >/dev/null 2>&1 &
agent=$!

# KVM's static keys stay on while the command's VMs come and go (kvm_keeper.py says why).
if [ -n "$KEEPER" ] && [ -e /dev/kvm ]; then
  mkfifo /keeper.out
  chroot $R /usr/bin/python3 "$KEEPER" </dev/null >/keeper.out 2>/dev/console &
  read -r ready </keeper.out
  [ "$ready" = READY ] || echo "testhost-init: kvm_keeper did not start" >/dev/console
fi
# With several CPUs only CPU 0 is up so far (maxcpus=1), so the keeper's flips patched kernel
# text with no other CPU to synchronise with: the others come up now.
for c in /sys/devices/system/cpu/cpu[1-9]*/online; do
  [ -e "$c" ] || continue
  [ "$(cat "$c")" = 1 ] || echo 1 >"$c" || echo "testhost-init: cannot bring ${c%/online} up" >/dev/console
done

echo "@@testhost-start-$NONCE@@" >/dev/console
# In the foreground (a background job would ignore SIGINT); the agent learns its pid from a file.
sh -c 'echo $$ >/command.pid; exec chroot "$0" /bin/sh /run/testhost/cmd.sh' $R \
  </dev/null >/dev/console 2>&1
echo $? >/ctl/status
kill $agent
sync
echo "@@testhost-end-$NONCE@@" >/dev/console
poweroff -f
