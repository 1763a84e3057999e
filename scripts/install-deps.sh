#!/usr/bin/env bash
# Installs every system package flick needs to build and test (Debian 12). Idempotent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  ccache  # repeated builds (CMakeLists.txt: FLICK_CCACHE)
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  liburing-dev libarchive-dev libzstd-dev zlib1g-dev libisal-dev libext2fs-dev e2fsprogs
  libcurl4-openssl-dev libssl-dev nlohmann-json3-dev libsqlite3-dev sqlite3 libcli11-dev
  libmicrohttpd-dev  # flickd's HTTP (tools/flickd/README.md)
  acpica-tools qemu-system-x86 busybox-static cpio kmod lz4 zstd
  curl iproute2 fio skopeo umoci docker-registry mmdebstrap
  apache2-utils openssl  # htpasswd -B and a test CA for the registry tests
  elfutils gdb  # the test host watchdog's thread stacks (eu-stack, gdb -batch)
  abigail-tools  # abidw/abidiff: the C ABI against abi/libflick.abi (scripts/abi-check.sh)
  python3 python3-jsonschema  # flickd's responses checked against its OpenAPI document
  python3-pytest python3-venv python3-pip python3-setuptools  # bindings/python: its tests, its documented install
  golang-go  # bindings/go (cgo; the standard library only)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
