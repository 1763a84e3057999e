#!/usr/bin/env bash
# Installs dependencies, then runs every test flick has:
#   1. the whole suite on the dev preset (warnings as errors), real Linux guests included;
#   2. the unit tests again under ASan + UBSan (asan preset);
#   3. a short run of every libFuzzer target (fuzz preset, clang-14).
# Extra arguments go to the first ctest, e.g. scripts/test.sh -LE 'slow|testhost'.
# FLICK_TEST_STAGES picks stages (default "dev asan fuzz").
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${FLICK_TEST_STAGES:-dev asan fuzz}

scripts/install-deps.sh

if [[ " $stages " == *" dev "* ]]; then
  cmake --preset dev
  cmake --build --preset dev
  ctest --preset dev --timeout 1800 "$@"
fi
if [[ " $stages " == *" asan "* ]]; then
  cmake --preset asan
  cmake --build --preset asan
  ctest --preset asan --timeout 900
fi
if [[ " $stages " == *" fuzz "* ]]; then
  cmake --preset fuzz
  cmake --build --preset fuzz --target fuzz_queue_walker fuzz_blk_request fuzz_vsock_packet \
    fuzz_mmio_device loader_fuzz image_layer_fuzz guest_events_fuzz
  ctest --preset fuzz --timeout 300
fi
