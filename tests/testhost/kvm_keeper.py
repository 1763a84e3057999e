#!/usr/bin/env python3
"""Holds KVM's per-VM static keys on for the test host's whole life.

KVM flips a few static keys as the first VM or vCPU comes and the last goes: preempt notifiers
(each VM), apic_sw_disabled (each vCPU until its guest enables its local APIC) and
apic_hw_disabled (a vCPU whose APIC base MSR is disabled). Each flip live-patches kernel text
with text_poke_bp(): an int3 on every patched site, then IPIs to the other CPUs. Under QEMU's
multi-threaded TCG that patching can wedge the test host for good when another CPU is executing
the site, e.g. __apic_accept_irq while a VM runs: both CPUs then loop in exc_int3 forever.

This process owns one VM whose two vCPUs never run: vCPU 0 keeps its APIC software-disabled,
vCPU 1 gets a disabled APIC base. The keys' counts never drop to zero again, so nothing is
patched while the command's VMs come and go. testhost_init.sh starts it before the command and
waits for READY on stdout.
"""
import fcntl
import os
import signal
import struct
import sys

KVMIO = 0xAE
KVM_CREATE_VM = KVMIO << 8 | 0x01
KVM_CREATE_VCPU = KVMIO << 8 | 0x41
KVM_CREATE_IRQCHIP = KVMIO << 8 | 0x60
KVM_SET_MSRS = 1 << 30 | 8 << 16 | KVMIO << 8 | 0x89  # _IOW(KVMIO, 0x89, struct kvm_msrs)
MSR_IA32_APICBASE = 0x1B
APIC_DEFAULT_BASE = 0xFEE00000  # bit 11 (enable) clear


def hold(dev: str = "/dev/kvm") -> list[int]:
    kvm = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    fcntl.ioctl(vm, KVM_CREATE_IRQCHIP, 0)
    vcpus = [fcntl.ioctl(vm, KVM_CREATE_VCPU, i) for i in (0, 1)]
    msrs = bytearray(struct.pack("=IIIIQ", 1, 0, MSR_IA32_APICBASE, 0, APIC_DEFAULT_BASE))
    if fcntl.ioctl(vcpus[1], KVM_SET_MSRS, msrs) != 1:
        raise OSError("KVM_SET_MSRS did not take the APIC base")
    return [kvm, vm, *vcpus]


def main() -> int:
    try:
        hold()
    except OSError as e:
        print(f"kvm_keeper: {e}", file=sys.stderr, flush=True)
        return 1
    print("READY", flush=True)
    os.close(1)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
