#!/usr/bin/env bash
# The main job: runs a busybox OCI image (built here from Debian's busybox-static, no network)
# as a flick machine with Debian's cloud kernel and flick-init, streams its console and exits
# with its program's exit code. Runs inside the QEMU test host when this machine's /dev/kvm
# cannot run Linux (see docs/testhost.md), directly otherwise.
#
#   scripts/run-machine.sh [flick machine run options] [-- CMD ARG...]
#   scripts/run-machine.sh -- sh -c 'echo hi; exit 3'
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target flick_cli

# The guest kernel: apt-get download + dpkg-deb -x into flick's cache (never installed).
kernel_vars=$(python3 tests/testhost/testhost.py fetch-kernel linux-image-cloud-amd64)
vmlinuz=$(sed -n 's/^vmlinuz=//p' <<<"$kernel_vars")
modules=$(sed -n 's/^modules=//p' <<<"$kernel_vars")

work=$PWD/build/release/run-machine
mkdir -p "$work"
image=$(python3 scripts/busybox-image.py "$work/busybox")

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
  args=(-- sh -c 'echo "hello from machine $(hostname): $(uname -sr), $(nproc) vCPU, $(free -m | awk "/Mem:/ {print \$2}") MiB"')
fi

exec python3 tests/testhost/testhost.py exec --timeout 600 -- \
  env FLICK_HOME="$work/cache" FLICK_STATE_DIR="$work/state" \
  "$PWD/build/release/bin/flick" machine run "$image" --rm --timings \
  --kernel "$vmlinuz" --kernel-modules "$modules" "${args[@]}"
