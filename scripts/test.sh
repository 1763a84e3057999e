#!/usr/bin/env bash
# Installs dependencies, builds flick (warnings as errors) and runs every test.
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -LE 'slow|testhost'
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset dev
cmake --build --preset dev
ctest --preset dev --timeout 1800 "$@"
