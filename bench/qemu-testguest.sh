#!/bin/sh
# Boots the PVH test guest in QEMU microvm RUNS times and prints the wall time of each run and
# the median: the reference the flick boot benchmark compares its own boot of this guest with.
#
#   bench/qemu-testguest.sh [BUILD_DIR] [RUNS] [ACCEL] [CPUS]
#   e.g. bench/qemu-testguest.sh build/dev 10 kvm 1
set -eu
build=${1:-build/dev}
runs=${2:-10}
accel=${3:-kvm}
cpus=${4:-1}
image=$build/guest/testguest-pvh.elf
[ -f "$image" ] || { echo "no $image: build the 'testguests' target first" >&2; exit 1; }
cpu=""
[ "$accel" = kvm ] && cpu="-cpu host"

times=""
i=0
while [ "$i" -lt "$runs" ]; do
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  out=$(timeout 60 qemu-system-x86_64 -M microvm,acpi=on -accel "$accel" $cpu -m 64 \
    -smp "$cpus" -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
    -kernel "$image" -append "testguest cpus=$cpus mem=64 qemu")
  t1=$(date +%s%N)
  case "$out" in
    *"flick-testguest: PASS"*) ;;
    *) printf '%s\n' "$out" >&2; echo "run $i: guest did not pass" >&2; exit 1 ;;
  esac
  ms=$(( (t1 - t0) / 1000000 ))
  echo "run $i: ${ms} ms"
  times="$times $ms"
  i=$((i + 1))
done
median=$(printf '%s\n' $times | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "qemu microvm ($accel, $cpus cpu): median ${median} ms over $runs runs"
