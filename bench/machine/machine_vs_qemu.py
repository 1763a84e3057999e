#!/usr/bin/env python3
"""Start latency of a stopped flick machine beside QEMU microvm booting the same kernel,
initramfs and root filesystem, in the same run (inside the test host when this machine's
/dev/kvm cannot run Linux).

  bench/machine/machine_vs_qemu.py [--flick-bench PATH] [--runs N] [--cpus N] [--memory MB]

PATH defaults to build/bench-machine/bench/machine/machine_start_bench. The machine runs
`sh -c 'exit 0'` from a busybox image built offline; flick's numbers are measured from
Machine::start() (bench/machine/machine_start_bench.cpp), QEMU's from spawning the process.
Everything lives in a scratch folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

DEFAULT_BENCH = ROOT / "build" / "release" / "bench" / "machine" / "machine_start_bench"
KERNEL_PACKAGE = "linux-image-cloud-amd64"
# flick's own command line (lib/machine/machine.cpp kBaseCmdline).
BASE_CMDLINE = "console=ttyS0 quiet panic=-1 pci=off initcall_blacklist=pci_subsys_init"
STARTED = '"event":"started"'
BOOT_TIMEOUT_S = 600  # one emulated boot; a hang fails the run instead of the whole bench


def qemu_argv(kernel: str, initrd: str, rootfs: str, cpus: int, memory_mb: int) -> list[str]:
    """QEMU 7.2 microvm with ACPI (the cloud kernel finds virtio-mmio devices only in the
    DSDT), the rootfs as /dev/vda with writes going to a throwaway overlay (snapshot=on), as
    flick's copy-on-write view does.

    initcall_blacklist=cmos_init: QEMU's microvm FADT does not declare the CMOS RTC absent
    (IAPC_BOOT_ARCH bit 5) as flick's does, so the kernel's rtc_cmos probe polls the RTC's
    update-in-progress bit, which took 9-13 s of a 15 s boot in the test host (docs/testhost.md);
    skipping it keeps the comparison about the VMMs."""
    return ["qemu-system-x86_64", "-M", "microvm,acpi=on,x-option-roms=off,rtc=off",
            "-accel", "kvm", "-cpu", "host", "-smp", str(cpus), "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", BASE_CMDLINE + " initcall_blacklist=cmos_init",
            "-drive", f"id=root,file={rootfs},format=raw,if=none,snapshot=on",
            "-device", "virtio-blk-device,drive=root"]


def qemu_boot(argv: list[str]) -> dict:
    """One QEMU boot: seconds from spawning it to the `started` console line and to its exit."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines: list[str] = []
    started: list[float] = []

    def pump() -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if STARTED in line and not started:
                started.append(time.monotonic() - t0)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        status = proc.wait(timeout=BOOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        status = None
        proc.kill()
        proc.wait()
    reader.join()
    exited_ok = any('"event":"exited"' in l and '"exit_code":0' in l for l in lines)
    return {"started": started[0] if started else None, "total": time.monotonic() - t0,
            "status": status, "exited_ok": exited_ok, "output": "\n".join(lines)}


def run_flick(bench: str, common: list[str], scratch: Path, runs: int, cpus: int,
              memory: int) -> list[dict]:
    argv = [bench, "flick", *common, "--state-dir", str(scratch / "state"),
            "--cache-dir", str(scratch / "cache"), "--runs", str(runs),
            "--cpus", str(cpus), "--memory", str(memory)]
    print("+ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"machine_start_bench flick failed with status {proc.returncode}")
    rows = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    return [r for r in rows if "run" in r]


def stats(values: list[float]) -> str:
    if not values:
        return f"{'-':>9} {'-':>9} {'-':>9}"
    return f"{statistics.median(values):9.0f} {min(values):9.0f} {max(values):9.0f}"


def inside(bench: str, kernel: str, modules: str, image: str, runs: int, cpus: int,
           memory: int) -> int:
    # Machines' files need a local file system (the copy-on-write overlay is an O_TMPFILE,
    # which the test host's 9p share lacks): /tmp is a tmpfs there. The kernel is copied too,
    # so that neither VMM reads it over 9p.
    local = Path(tempfile.mkdtemp(prefix="flick-machine-bench-", dir="/tmp"))
    try:
        shutil.copy(kernel, local / "vmlinuz")
        return measure(bench, local, str(local / "vmlinuz"), modules, image, runs, cpus, memory)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"machine_vs_qemu: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(local, ignore_errors=True)


def measure(bench: str, scratch: Path, kernel: str, modules: str, image: str, runs: int,
            cpus: int, memory: int) -> int:
    common = ["--image", image, "--kernel", kernel, "--kernel-modules", modules]
    flick = run_flick(bench, common, scratch, runs, cpus, memory)

    files_argv = [bench, "qemu-files", *common, "--cache-dir", str(scratch / "cache"),
                  "--out", str(scratch / "qemu")]
    out = subprocess.run(files_argv, stdout=subprocess.PIPE, text=True, check=True).stdout
    files = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    argv = qemu_argv(files["kernel"], files["initrd"], files["rootfs"], cpus, memory)
    print("+ " + " ".join(argv), flush=True)

    qemu: list[dict] = []
    failures = 0
    for i in range(runs + 1):  # the first boot warms the page cache, as flick's warm-up does
        r = qemu_boot(argv)
        ok = r["started"] is not None and r["status"] == 0 and r["exited_ok"]
        label = "warm-up" if i == 0 else f"run {i - 1}"
        started = "-" if r["started"] is None else f"{r['started'] * 1000:.0f} ms"
        print(f"qemu {label}: started {started}, exit {r['total'] * 1000:.0f} ms, "
              f"status {r['status']}{'' if ok else ', FAILED'}", flush=True)
        if not ok:
            failures += 1
            print("  output:\n    " + r["output"][-4000:].replace("\n", "\n    "), flush=True)
        elif i > 0:
            qemu.append(r)

    f_timer = [r["boot_timer_ms"] for r in flick]
    f_started = [r["started_ms"] for r in flick]
    f_stopped = [r["stopped_ms"] for r in flick]
    q_started = [r["started"] * 1000 for r in qemu]
    q_total = [r["total"] * 1000 for r in qemu]
    print(f"\n{cpus} vCPU, {memory} MiB, {runs} run(s) each; ms  {'median':>9} {'min':>9} {'max':>9}")
    print(f"{'flick start() -> boot timer':<36} {stats(f_timer)}")
    print(f"{'flick start() -> started':<36} {stats(f_started)}")
    print(f"{'flick start() -> stopped':<36} {stats(f_stopped)}")
    print(f"{'qemu spawn -> started (console)':<36} {stats(q_started)}")
    print(f"{'qemu spawn -> exit':<36} {stats(q_total)}")
    if f_started and q_started:
        ratio = statistics.median(q_started) / statistics.median(f_started)
        print(f"{'qemu/flick, median to started':<36} {ratio:9.2f}")
    if f_stopped and q_total:
        ratio = statistics.median(q_total) / statistics.median(f_stopped)
        print(f"{'qemu/flick, median to exit/stopped':<36} {ratio:9.2f}")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flick-bench", default=str(DEFAULT_BENCH), help="machine_start_bench")
    ap.add_argument("--runs", type=int, default=5, help="measured starts/boots of each")
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", type=int, default=256, help="guest MiB")
    ap.add_argument("--inside", nargs=3, metavar=("KERNEL", "MODULES", "IMAGE"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    bench = str(Path(a.flick_bench).resolve())
    if a.inside:
        kernel, modules, image = a.inside
        return inside(bench, kernel, modules, image, a.runs, a.cpus, a.memory)

    if not os.access(bench, os.X_OK):
        print(f"machine_vs_qemu: no machine_start_bench at {bench} (build it first)", file=sys.stderr)
        return 1
    # /var/tmp and /tmp are fresh tmpfs inside the test host; the scratch folder is shared
    # into it as the writable work folder, at the same path.
    scratch = Path(tempfile.mkdtemp(prefix="flick-machine-bench-", dir="/var/tmp"))
    try:
        image = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(scratch / "layout"),
             "--tag", "bench"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        kernel = kernel_cache.fetch_kernel(KERNEL_PACKAGE)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--flick-bench", bench,
               "--runs", str(a.runs), "--cpus", str(a.cpus), "--memory", str(a.memory),
               "--inside", str(kernel.vmlinuz), str(kernel.modules_dir), image]
        os.chdir(scratch)
        if not testhost.needed():
            return main(cmd[2:])
        # The test host has one vCPU unless asked; a 2-vCPU guest needs 2 there.
        return testhost.run(cmd, timeout=3600, smp=max(1, a.cpus), workdir=scratch)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
