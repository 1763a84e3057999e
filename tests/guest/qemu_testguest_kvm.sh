#!/bin/sh
# Both test guest images under QEMU microvm on KVM, 2 vCPUs each: one command, so that where
# the test host is needed they share its boot.
#   qemu_testguest_kvm.sh RUNNER QEMU PVH_IMAGE BZIMAGE
set -e
runner=$1 qemu=$2 pvh=$3 bzimage=$4
python3 "$runner" "$pvh" --qemu "$qemu" --accel kvm --smp 2 --expect "ok smp 2/2"
python3 "$runner" "$bzimage" --qemu "$qemu" --accel kvm --smp 2 --expect "ok smp 2/2"
