#!/usr/bin/env python3
"""Cold boot against restore from a snapshot, for Debian's cloud kernel under `flick vm run`.

The guest (busybox initramfs, virtio-rng and a virtio disk) prints "count N" every 10 ms.
Cold: `flick vm run --kernel ...` from spawn to the first count line. Restore: `flick vm run
--restore DIR` of a snapshot saved at "count 3" (`--snapshot-when`), from spawn to the first
count line it prints. Medians of --runs, alternating; the state file's size and the memory
file's size on disk are printed too. Then memory: --share VMs restored from the one snapshot
at once, each counting, against as many cold-booted ones: their VMM processes' PSS
(/proc/PID/smaps_rollup), which counts a page shared by N processes as 1/N in each.

  linux_restore_compare.py FLICK [--runs N] [--memory MIB] [--share N]

Runs itself inside the test host when this machine's /dev/kvm cannot run Linux.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTHOST = Path(__file__).resolve().parent.parent / "tests" / "testhost"
sys.path.insert(0, str(TESTHOST))
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

GUEST_INIT = """#!/bin/sh
mount -t proc proc /proc
i=0
while true; do i=$((i+1)); echo "count $i"; usleep 10000; done
"""
COUNT = re.compile(rb"count (\d+)\r?\n")
SETUP = re.compile(rb"VMM setup (\d+) us")
CMDLINE = "console=ttyS0 quiet panic=-1 pci=off"


def until_count(argv: list[str], above: int = 0, limit: float = 300) -> tuple[float, int]:
    """Seconds from spawn to the first "count N" line with N > above, and the VMM's set-up time
    (create or restore to the first KVM_RUN, from --boot-time) in µs; the process then gets
    SIGINT, which makes it print that."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    buf = b""
    try:
        while time.monotonic() - start < limit:
            chunk = p.stdout.read1(65536)
            if not chunk:
                break
            buf += chunk
            if any(int(m[1]) > above for m in COUNT.finditer(buf)):
                took = time.monotonic() - start
                p.send_signal(signal.SIGINT)
                rest = p.communicate(timeout=60)[0]
                setup = SETUP.search(buf + rest)
                return took, int(setup[1]) if setup else -1
        raise RuntimeError(f"no count above {above} from {argv[:4]}: {buf[-2000:]!r}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def pss_kib(pid: int) -> tuple[int, int]:
    """(Pss, Rss) of a process in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])


def running_pss(argvs: list[list[str]], above: int) -> list[tuple[int, int]]:
    """Starts every argv at once, waits until each printed a count above `above` and two
    seconds more, and returns each process's (Pss, Rss) in KiB."""
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
             for a in argvs]
    try:
        for p in procs:
            buf = b""
            while not any(int(m[1]) > above for m in COUNT.finditer(buf)):
                chunk = p.stdout.read1(65536)
                if not chunk:
                    raise RuntimeError(f"a VM ended early: {buf[-1000:]!r}")
                buf += chunk
        time.sleep(2)
        return [pss_kib(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def inside(flick: str, kernel: str, initrd: str, runs: int, memory: int, share: int) -> int:
    with tempfile.TemporaryDirectory(prefix="flick-restore-bench-") as tmp:
        disk = Path(tmp) / "disk.img"
        disk.write_bytes(b"\0" * (4 << 20))
        devices = ["--memory", str(memory), "--disk", str(disk), "--boot-time"]
        boot = [flick, "vm", "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE, *devices]
        snap = Path(tmp) / "snap"
        save = subprocess.run(boot + ["--snapshot", str(snap), "--snapshot-when", "count 3\r", "--timeout", "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        saved = [int(m[1]) for m in COUNT.finditer(save.stdout)]
        if save.returncode != 0 or not saved:
            print(save.stdout[-2000:].decode(errors="replace"))
            return 1
        cold, warm, cold_setup, warm_setup = [], [], [], []
        for _ in range(runs):
            t, setup = until_count(boot)
            cold.append(t)
            cold_setup.append(setup)
            t, setup = until_count([flick, "vm", "run", "--restore", str(snap), *devices], above=saved[-1])
            warm.append(t)
            warm_setup.append(setup)
        state = (snap / "vm.state").stat().st_size
        mem = snap / "memory"
        print(f"guest: {memory} MiB, 1 vCPU, virtio-rng and a virtio disk; medians of {runs}")
        ms = lambda v: statistics.median(v) * 1000  # noqa: E731
        print(f"cold boot to the first count        {ms(cold):8.0f} ms   (VMM set-up {ms(cold_setup) / 1e6:6.1f} ms)")
        print(f"restore to the next count           {ms(warm):8.0f} ms   (VMM set-up {ms(warm_setup) / 1e6:6.1f} ms)")
        print(f"ratio: restore / cold boot = {statistics.median(warm) / statistics.median(cold):.3f}")
        print(f"snapshot: vm.state {state} bytes, memory {mem.stat().st_size >> 20} MiB "
              f"({mem.stat().st_blocks * 512 >> 20} MiB on disk)")
        if share:
            disks = []
            for i in range(2 * share):  # each VM its own disk file
                d = Path(tmp) / f"disk{i}.img"
                d.write_bytes(b"\0" * (4 << 20))
                disks.append(d)
            no_disk = [a for a in devices if a not in ("--disk", str(disk))]
            restored = running_pss([[flick, "vm", "run", "--restore", str(snap), *no_disk, "--disk", str(d)]
                                    for d in disks[:share]], saved[-1])
            cold_vms = running_pss([[*boot[:boot.index("--memory")], *no_disk, "--disk", str(d)]
                                    for d in disks[share:]], 0)
            mib = lambda kib: kib / 1024  # noqa: E731
            r_pss = statistics.mean(p for p, _ in restored)
            c_pss = statistics.mean(p for p, _ in cold_vms)
            r_rss = statistics.mean(r for _, r in restored)
            print(f"{share} VMs restored from one snapshot: PSS {mib(r_pss):6.1f} MiB each (RSS {mib(r_rss):6.1f})")
            print(f"{share} VMs cold-booted:                PSS {mib(c_pss):6.1f} MiB each "
                  f"(RSS {mib(statistics.mean(r for _, r in cold_vms)):6.1f})")
            print(f"shared: 1 - PSS / RSS of a restored VM = {1 - r_pss / r_rss:.2f}; "
                  f"restored PSS / cold PSS = {r_pss / c_pss:.2f}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]), int(argv[7]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flick")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--share", type=int, default=4, help="VMs at once for the memory measure (0: none)")
    a = ap.parse_args(argv[1:])
    flick = str(Path(a.flick).resolve())
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    initrd = guest_initramfs.build(kernel.root, ["virtio_mmio", "virtio_rng", "virtio_blk"], GUEST_INIT)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, str(kernel.vmlinuz), str(initrd),
           str(a.runs), str(a.memory), str(a.share)]
    if testhost.needed():
        return testhost.run(cmd, timeout=3000)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
