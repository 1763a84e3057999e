#!/usr/bin/env bash
# Installs dependencies, then runs every test flick has:
#   1. the whole suite on the dev preset (warnings as errors), real Linux guests included;
#   2. the unit tests again under ASan + UBSan (asan preset);
#   3. a short run of every libFuzzer target (fuzz preset, clang-14).
# Extra arguments go to the first ctest, e.g. scripts/test.sh -LE 'slow|testhost|kvm'.
# FLICK_TEST_STAGES picks stages (default "dev asan fuzz").
# Tests that need KVM run where KVM can run them (tests/testhost/kvm_test.py: directly, or in
# the QEMU test host). A skipped or not-run test fails the run (tests/check_skips.py) unless
# tests/allowed-skips.txt lists it with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${FLICK_TEST_STAGES:-dev asan fuzz}
# Each stage's time, for the log: CI has a budget.
stage_started=$SECONDS
junits=()
stage_done() { echo "test.sh: $1 took $((SECONDS - stage_started)) s"; stage_started=$SECONDS; }

scripts/install-deps.sh
stage_done "installing dependencies"
# Builds go through ccache (CMakeLists.txt); these let a clone at any path reuse its entries
# (paths in the compile commands made relative to the checkout, the build folder not hashed).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

if [[ " $stages " == *" dev "* ]]; then
  cmake --preset dev
  cmake --build --preset dev
  stage_done "the dev build"
  ctest --preset dev --timeout 1800 --output-junit "$PWD/build/dev/ctest-junit.xml" "$@"
  python3 tests/check_skips.py build/dev/ctest-junit.xml
  junits+=(build/dev/ctest-junit.xml)
  stage_done "the dev tests"
fi
if [[ " $stages " == *" asan "* ]]; then
  cmake --preset asan
  cmake --build --preset asan
  stage_done "the asan build"
  ctest --preset asan --timeout 900 -j 2 --output-junit "$PWD/build/asan/ctest-junit.xml"
  python3 tests/check_skips.py build/asan/ctest-junit.xml
  junits+=(build/asan/ctest-junit.xml)
  stage_done "the asan tests"
fi
if [[ " $stages " == *" fuzz "* ]]; then
  cmake --preset fuzz
  cmake --build --preset fuzz --target fuzzers
  stage_done "the fuzz build"
  ctest --preset fuzz --timeout 300 -j 2 --output-junit "$PWD/build/fuzz/ctest-junit.xml"
  python3 tests/check_skips.py build/fuzz/ctest-junit.xml
  junits+=(build/fuzz/ctest-junit.xml)
  stage_done "the fuzzers"
fi
# The closing line, over every stage that ran.
python3 tests/check_skips.py --summary "${junits[@]}"
