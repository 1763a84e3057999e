#!/usr/bin/env python3
"""Checks that /dev/kvm runs a guest: a real-mode VM executes `mov al, 42; out 0x10, al; hlt`.

Bare ioctls through fcntl (the KVM API, Documentation/virt/kvm/api.rst); the guest must exit
with KVM_EXIT_IO on port 0x10 carrying 42, then KVM_EXIT_HLT. With --require-svm it also checks
that the CPU advertises AMD-V, as it does inside the test host. Exits 0 on success.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46  # _IOW(KVMIO, 0x46, 32-byte region)
KVM_RUN = 0xAE80
KVM_SET_REGS = 0x4090AE82                # _IOW(KVMIO, 0x82, struct kvm_regs: 144 bytes)
KVM_GET_SREGS = 0x8138AE83               # _IOR(KVMIO, 0x83, struct kvm_sregs: 312 bytes)
KVM_SET_SREGS = 0x4138AE84
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5

GUEST_CODE = bytes([0xB0, 42, 0xE6, 0x10, 0xF4])  # mov al, 42; out 0x10, al; hlt
CODE_GPA = 0x1000
MEM_SIZE = 0x10000


def fail(msg: str) -> int:
    print(f"kvm_probe: FAIL: {msg}")
    return 1


def main() -> int:
    if "--require-svm" in sys.argv[1:]:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
        if "svm" not in flags:
            return fail("the CPU has no svm flag")
        print("kvm_probe: cpu has svm")
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return fail(f"cannot open /dev/kvm: {e}")
    api = fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0)
    if api != 12:
        return fail(f"KVM_GET_API_VERSION is {api}, expected 12")
    try:
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    except OSError as e:
        return fail(f"KVM_CREATE_VM: {e}")
    print("kvm_probe: KVM_CREATE_VM ok")

    mem = mmap.mmap(-1, MEM_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mem[CODE_GPA:CODE_GPA + len(GUEST_CODE)] = GUEST_CODE
    host_addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, struct.pack("<IIQQQ", 0, 0, 0, MEM_SIZE, host_addr))
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
    run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    sregs = bytearray(312)
    fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs, True)
    struct.pack_into("<Q", sregs, 0, 0)   # cs.base
    struct.pack_into("<H", sregs, 12, 0)  # cs.selector
    fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
    regs = [0] * 18
    regs[16], regs[17] = CODE_GPA, 0x2  # rip, rflags (bit 1 is always set)
    fcntl.ioctl(vcpu, KVM_SET_REGS, struct.pack("<18Q", *regs))

    exits = []
    for _ in range(4):
        fcntl.ioctl(vcpu, KVM_RUN, 0)
        reason = struct.unpack_from("<I", run, 8)[0]
        if reason == KVM_EXIT_IO:
            direction, size, port, count, data_offset = struct.unpack_from("<BBHIQ", run, 32)
            exits.append(("io", direction, port, run[data_offset]))
            continue
        exits.append((reason,))
        break
    if exits != [("io", 1, 0x10, 42), (KVM_EXIT_HLT,)]:
        return fail(f"the guest's exits were {exits}, expected an OUT of 42 to 0x10, then HLT")
    print("kvm_probe: guest ran: out 0x10 <- 42, then hlt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
