#!/usr/bin/env python3
"""Writes seed inputs for fuzz_mmio_device: a driver that initialises each device (§3.1.1),
sets up its queues in guest memory and submits one request, so the fuzzer starts from inputs
that reach the device's request processing.

    make_mmio_seeds.py <corpus-dir>
"""
import os
import struct
import sys

STATUS, DFSEL, DF, QSEL, QNUM, QREADY, QNOTIFY = 0x70, 0x24, 0x20, 0x30, 0x38, 0x44, 0x50
QDESC, QDRIVER, QDEVICE, ISR = 0x80, 0x90, 0xA0, 0x60
QSIZE = 16
RING_BASES = [0x0, 0x2000, 0x3000]  # desc table; avail at +0x100, used at +0x200
MEM_LEN = 0x3A00


def write(off, val):
    return struct.pack("<BHI", 1 | (2 << 1), off, val)  # 4-byte write


def read(off):
    return struct.pack("<BHI", 2 << 1, off, 0)


def init_ops(nqueues, notify):
    ops = [write(STATUS, 0), write(STATUS, 1), write(STATUS, 3),
           write(DFSEL, 1), write(DF, 1), write(DFSEL, 0), write(DF, 0), write(STATUS, 11)]
    for q in range(nqueues):
        b = RING_BASES[q]
        ops += [write(QSEL, q), write(QNUM, QSIZE), write(QDESC, b), write(QDRIVER, b + 0x100),
                write(QDEVICE, b + 0x200), write(QREADY, 1)]
    ops += [write(STATUS, 15)] + [write(QNOTIFY, q) for q in notify] + [read(ISR)]
    return b"".join(ops)


def memory(chains):
    """chains: {queue: [(addr, len, flags), ...]} -> guest memory with one chain per queue."""
    mem = bytearray(MEM_LEN)
    for q, descs in chains.items():
        b = RING_BASES[q]
        for i, (addr, ln, flags) in enumerate(descs):
            nxt = i + 1 if i + 1 < len(descs) else 0
            if nxt:
                flags |= 1
            struct.pack_into("<QIHH", mem, b + 16 * i, addr, ln, flags, nxt)
        struct.pack_into("<HHH", mem, b + 0x100, 0, 1, 0)  # avail: flags, idx = 1, ring[0] = 0
    return mem


def seed(device, mem, ops):
    return bytes([device]) + struct.pack("<H", len(mem)) + bytes(mem) + ops


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    # virtio-blk: a 512-byte read of sector 0.
    blk = memory({0: [(0x400, 16, 0), (0x1000, 512, 2), (0x410, 1, 2)]})
    struct.pack_into("<IIQ", blk, 0x400, 0, 0, 0)
    # virtio-rng: 64 bytes.
    rng = memory({0: [(0x1000, 64, 2)]})
    # virtio-vsock: an RX buffer, and a REQUEST to host port 1234 on the TX queue.
    vs = memory({0: [(0x1000, 44 + 512, 2)], 1: [(0x3800, 44, 0)]})
    struct.pack_into("<QQIIIHHIII", vs, 0x3800, 3, 2, 5000, 1234, 0, 1, 1, 0, 65536, 0)
    for name, dev, mem, nq, notify in (("blk", 0, blk, 1, [0]), ("rng", 1, rng, 1, [0]),
                                       ("vsock", 2, vs, 3, [0, 1])):
        with open(os.path.join(out, f"seed-{name}"), "wb") as f:
            f.write(seed(dev, mem, init_ops(nq, notify)))


if __name__ == "__main__":
    main()
