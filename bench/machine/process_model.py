#!/usr/bin/env python3
"""What running each machine in its own flick-vmm process costs, in one run (inside the test
host when this machine's /dev/kvm cannot run Linux):

  1. Process start: `flick-vmm --version` against `flick --version` (the library-linked CLI),
     and how many shared libraries each loads.
  2. The PVH test guest's whole run (boot to power-off): a machine started through the API
     (flick-vmm spawned, its VM process forked), `flick vm run` (the VM in the CLI's own
     process) and QEMU microvm; and the machine's start() to its VM created (just before the
     first KVM_RUN).
  3. A stopped busybox machine on Debian's cloud kernel (`sh -c 'exit 0'`) started and waited
     for until stopped: through the C++ API, and through `flick machine start` + `flick
     machine wait --state stopped`.
  4. Memory a started machine costs the host beyond its guest's RAM: RSS and PSS of its
     monitor and VM process, the guest RAM mapping subtracted.

  bench/machine/process_model.py [--build DIR] [--runs N]

DIR defaults to build/release (bin/flick, bin/flick-vmm, guest/testguest-pvh.elf,
bench/machine/machine_start_bench).
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
sys.path.insert(0, str(HERE))
import kernel_cache  # noqa: E402
import testhost  # noqa: E402
from machine_vs_qemu import KERNEL_PACKAGE, stats  # noqa: E402

PASS = "flick-testguest: PASS"


def wall_ms(argv: list[str], expect: str | None = None, env: dict | None = None) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600, env=env)
    ms = (time.monotonic() - t0) * 1000
    if proc.returncode != 0 or (expect and expect not in proc.stdout):
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    return ms


def repeat(runs: int, argv: list[str], expect: str | None = None) -> list[float]:
    wall_ms(argv, expect)  # warm-up: page cache
    return [wall_ms(argv, expect) for _ in range(runs)]


def libraries(binary: str) -> int:
    out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True, check=True).stdout
    return sum(1 for l in out.splitlines() if "=>" in l or l.strip().startswith("/"))


def bench_json(argv: list[str]) -> list[dict]:
    print("+ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed with status {proc.returncode}")
    return [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]


def row(name: str, values: list[float]) -> None:
    print(f"  {name:<44} {stats(values)}")


def ratio(name: str, a: list[float], b: list[float]) -> None:
    print(f"  {name:<44} {statistics.median(a) / statistics.median(b):9.2f}")


def measure(build: Path, scratch: Path, kernel: str, modules: str, image: str, runs: int) -> int:
    flick, vmm = str(build / "bin" / "flick"), str(build / "bin" / "flick-vmm")
    bench = str(build / "bench" / "machine" / "machine_start_bench")
    guest = str(scratch / "testguest-pvh.elf")
    shutil.copy(build / "guest" / "testguest-pvh.elf", guest)
    print(f"{runs} measured run(s) of each after one warm-up; ms  {'median':>9} {'min':>9} {'max':>9}")

    print("\n1. process start (--version)")
    vmm_start = repeat(runs * 4, [vmm, "--version"])
    cli_start = repeat(runs * 4, [flick, "--version"])
    row(f"flick-vmm ({libraries(vmm)} shared libraries)", vmm_start)
    row(f"flick ({libraries(flick)} shared libraries)", cli_start)
    ratio("flick / flick-vmm", cli_start, vmm_start)

    print("\n2. the PVH test guest, boot to power-off, 1 vCPU, 64 MiB")
    tiny = bench_json([bench, "tiny", "--image", image, "--kernel", guest,
                       "--state-dir", str(scratch / "state-tiny"), "--cache-dir", str(scratch / "cache"),
                       "--runs", str(runs)])
    vm_run = repeat(runs, [flick, "vm", "run", "--kernel", guest, "--memory", "64",
                           "--cmdline", "testguest cpus=1 mem=64"], PASS)
    qemu = repeat(runs, ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host",
                         "-m", "64", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                         "-serial", "stdio", "-no-reboot", "-kernel", guest,
                         "-append", "testguest cpus=1 mem=64 qemu"], PASS)
    tiny_runs = [r for r in tiny if "run" in r]
    created = [r["vm_created_ms"] for r in tiny_runs]
    settled = [r["settled_ms"] for r in tiny_runs]
    row("machine start() -> VM created (flick-vmm)", created)
    row("machine start() -> settled (flick-vmm)", settled)
    row("flick vm run, spawn -> exit", vm_run)
    row("qemu microvm, spawn -> exit", qemu)
    ratio("flick vm run / machine", vm_run, settled)
    ratio("qemu / machine", qemu, settled)

    print("\n3. a stopped busybox machine, start -> stopped, 1 vCPU, 256 MiB")
    rows = bench_json([bench, "flick", "--image", image, "--kernel", kernel, "--kernel-modules", modules,
                       "--state-dir", str(scratch / "state"), "--cache-dir", str(scratch / "cache"),
                       "--runs", str(runs), "--cli", flick, "--rss", "1"])
    api = [r["stopped_ms"] for r in rows if "run" in r]
    cli = [r["stopped_ms"] for r in rows if "cli_run" in r]
    row("C++ API: start() + wait(stopped)", api)
    row("CLI: machine start + machine wait", cli)
    ratio("CLI / API", cli, api)

    print("\n4. a started machine (sleep), 256 MiB guest, KiB")
    rss = next(r for r in rows if r.get("rss"))
    for key in ("rss", "pss"):
        print(f"  {key.upper()}: monitor {rss[key + '_monitor_kib']}, VM process {rss[key + '_vm_kib']} "
              f"(guest RAM {rss[key + '_guest_ram_kib']}), beyond guest RAM {rss[key + '_beyond_guest_kib']}")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build" / "release"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--inside", nargs=3, metavar=("KERNEL", "MODULES", "IMAGE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    build = Path(a.build).resolve()
    if a.inside:
        # Machines' files need a local file system (the test host's 9p share lacks O_TMPFILE).
        local = Path(tempfile.mkdtemp(prefix="flick-process-bench-", dir="/tmp"))
        try:
            shutil.copy(a.inside[0], local / "vmlinuz")
            return measure(build, local, str(local / "vmlinuz"), a.inside[1], a.inside[2], a.runs)
        except (RuntimeError, subprocess.SubprocessError) as e:
            print(f"process_model: {e}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(local, ignore_errors=True)

    for f in ("bin/flick", "bin/flick-vmm", "guest/testguest-pvh.elf", "bench/machine/machine_start_bench"):
        if not (build / f).exists():
            print(f"process_model: no {build / f} (build the release preset first)", file=sys.stderr)
            return 1
    scratch = Path(tempfile.mkdtemp(prefix="flick-process-bench-", dir="/var/tmp"))
    try:
        image = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(scratch / "layout"),
             "--tag", "bench"], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        kernel = kernel_cache.fetch_kernel(KERNEL_PACKAGE)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--build", str(build), "--runs", str(a.runs),
               "--inside", str(kernel.vmlinuz), str(kernel.modules_dir), image]
        os.chdir(scratch)
        if not testhost.needed():
            return main(cmd[2:])
        return testhost.run(cmd, timeout=3600, smp=1, workdir=scratch)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
