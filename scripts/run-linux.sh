#!/usr/bin/env bash
# Boots Debian's stock cloud kernel with a busybox initramfs in flick's own VMM: the guest
# prints its CPUs, command line and ACPI tables, then powers off. Runs inside the QEMU test
# host when this machine's /dev/kvm cannot run Linux (see docs/testhost.md), directly otherwise.
#
#   scripts/run-linux.sh [--cpus N] [--memory MIB]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target flick_cli

kernel_vars=$(python3 tests/testhost/testhost.py fetch-kernel linux-image-cloud-amd64)
vmlinuz=$(sed -n 's/^vmlinuz=//p' <<<"$kernel_vars")
kdir=$(dirname "$(dirname "$vmlinuz")")

work=build/release/run-linux
mkdir -p "$work"
cat > "$work/init.sh" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
devmem 0xc0000000 8 123   # flick's boot timer
echo "== flick guest: $(uname -sr)"
echo "cpus:    $(grep -c ^processor /proc/cpuinfo)"
echo "cmdline: $(cat /proc/cmdline)"
echo "acpi:    $(ls /sys/firmware/acpi/tables | tr '\n' ' ')"
echo "uptime:  $(cut -d' ' -f1 /proc/uptime) s"
poweroff -f
INIT
python3 tests/testhost/guest_initramfs.py --kernel-dir "$kdir" --init "$work/init.sh" \
  -o "$work/initrd.img" >/dev/null

exec python3 tests/testhost/testhost.py exec --timeout 300 -- \
  "$PWD/build/release/bin/flick" vm run --kernel "$vmlinuz" --initrd "$PWD/$work/initrd.img" \
  --cmdline "console=ttyS0 quiet panic=-1 pci=off" --boot-time "$@"
