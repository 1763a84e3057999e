#!/bin/sh
# Boots the PVH test guest RUNS times with `flick vm run` and with QEMU microvm, in the same
# run on the same /dev/kvm, and prints the median wall time of each process and the ratio.
# Then runs the boot_bench suite for flick's internal breakdown.
#
#   bench/boot-compare.sh [BUILD_DIR] [RUNS] [CPUS]
set -eu
build=${1:-build/release}
runs=${2:-20}
cpus=${3:-1}
image=$build/guest/testguest-pvh.elf
flick=$build/bin/flick
for f in "$image" "$flick"; do
  [ -e "$f" ] || { echo "missing $f: build the release preset first" >&2; exit 1; }
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

time_runs() {  # time_runs NAME CMD... : prints one wall time (us) per run
  i=0
  while [ "$i" -lt "$runs" ]; do
    t0=$(date +%s%N)
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "$1 failed" >&2; exit 1; }
    t1=$(date +%s%N)
    case "$out" in *"flick-testguest: PASS"*) ;; *) printf '%s\n' "$out" >&2; exit 1 ;; esac
    echo $(( (t1 - t0) / 1000 ))
    i=$((i + 1))
  done
}

flick_us=$(time_runs "$flick" vm run --kernel "$image" --cpus "$cpus" --memory 64 \
  --cmdline "testguest cpus=$cpus mem=64" | median)
qemu_us=$(time_runs qemu-system-x86_64 -M microvm,acpi=on -accel kvm -cpu host -m 64 \
  -smp "$cpus" -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
  -kernel "$image" -append "testguest cpus=$cpus mem=64 qemu" | median)

echo "Boot of the PVH test guest to power-off, whole process, median of $runs runs ($cpus vCPU):"
printf '  %-14s %8d us\n' "flick vm run" "$flick_us" "qemu microvm" "$qemu_us"
awk -v f="$flick_us" -v q="$qemu_us" 'BEGIN { printf "  ratio qemu/flick: %.2fx\n", q / f }'
echo
"$build/bench/vmm/boot_bench" --benchmark_counters_tabular=true
