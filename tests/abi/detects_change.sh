#!/usr/bin/env bash
# Proves scripts/abi-check.sh fails on an incompatible change: builds the C ABI (capi/*.cpp)
# against a copy of flick.h whose flick_vm_options has two fields swapped, as a shared library
# with libflick's soname and version script (the C++ layers stay undefined: unneeded to read
# the ABI), and expects the check to reject it, naming the struct and nothing else.
# Usage: detects_change.sh BUILD_DIR WORK_DIR CXX
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$1 work=$2 cxx=$3
rm -rf "$work"
mkdir -p "$work/include/flick" "$work/lib"
cp "$src/include/flick/"*.h "$work/include/flick/"

# Swap `cpus` and `memory_mib`: same names, same types, different offsets.
header=$work/include/flick/flick.h
python3 - "$header" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
cpus = re.search(r"^ *uint32_t cpus;.*\n", text, re.M)
mem = re.search(r"^ *uint64_t memory_mib;.*\n", text, re.M)
if not (cpus and mem and cpus.end() == mem.start()):
    sys.exit("flick_vm_options no longer has `cpus` right before `memory_mib`: update this test")
text = text[:cpus.start()] + mem.group(0) + cpus.group(0) + text[mem.end():]
open(path, "w").write(text)
PY

soname=$(readelf -d "$build/lib/libflick.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
"$cxx" -std=c++20 -g -fPIC -shared -fvisibility=hidden -DFLICK_BUILDING_LIBRARY \
  -I"$work/include" -I"$build/include" -I"$src/lib" "$src"/capi/*.cpp \
  -Wl,--version-script="$src/capi/flick.map" -Wl,-soname,"$soname" -o "$work/lib/libflick.so"

status=0
"$src/scripts/abi-check.sh" "$work" >"$work/report" 2>&1 || status=$?
cat "$work/report"
if ((status == 77)); then exit 77; fi
fail() { echo "detects_change: $*" >&2; exit 1; }
((status == 1)) || fail "abi-check.sh exited $status, expected 1 (a rejected change)"
grep -q "flick_vm_options" "$work/report" || fail "the report does not name flick_vm_options"
grep -q "Functions changes summary: 0 Removed" "$work/report" ||
  fail "functions went missing: the variant differs beyond the swapped fields"
echo "detects_change: the swapped fields of flick_vm_options were rejected"
