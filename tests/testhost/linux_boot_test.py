#!/usr/bin/env python3
"""Boots Debian's cloud kernel with `flick vm run` (bzImage and the extracted vmlinux, 1 and 2
vCPUs), checks what the guest reports, and measures the same boot under QEMU microvm.

  linux_boot_test.py FLICK [--runs N] [--qemu-cpus 1,2] [--cmdline-extra ARGS] [--log-dir DIR]
                     [--peer FLICK2 ...]

--cmdline-extra adds kernel parameters to every boot (say `initcall_debug report_dmesg`: the
guest then prints its kernel log after it took its uptime); --log-dir keeps each boot's whole
output in DIR (inside the work folder the test host shares); --peer boots another flick build
the same way (bzImage, 1 vCPU) in the same run, for before/after comparisons. Boots go round
robin over the configurations, one run at a time.

Runs inside the test host when this machine's /dev/kvm cannot run Linux (testhost.py needed),
otherwise directly. Exits 0 when every flick boot powered off cleanly with the expected report.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import extract_vmlinux  # noqa: E402
import guest_report  # noqa: E402
import testhost  # noqa: E402

FLICK_CPUS = (1, 2)
BOOT_TIME_RE = re.compile(r"flick: boot time: (\d+) us to the boot timer")


@dataclasses.dataclass
class Row:
    name: str
    results: list[guest_report.BootResult]
    boot_timer_us: list[int]

    def median(self, values: list[float | None]) -> str:
        v = [x for x in values if x is not None]
        return f"{statistics.median(v):7.2f}" if v else "      -"

    def line(self) -> str:
        timer = [t / 1e6 for t in self.boot_timer_us] or [None]
        return (f"{self.name:<34} {self.median([r.guest_uptime_at_init for r in self.results])} "
                f"{self.median(timer)} {self.median([r.wall_to_init for r in self.results])} "
                f"{self.median([r.wall_total for r in self.results])}")


def flick_argv(flick: str, kernel: Path, initrd: Path, cmdline: str, cpus: int) -> list[str]:
    return [flick, "vm", "run", "--kernel", str(kernel), "--initrd", str(initrd),
            "--cmdline", cmdline, "--cpus", str(cpus), "--memory", "512", "--boot-time",
            "--timeout", "100"]


@dataclasses.dataclass
class Options:
    runs: int
    cmdline_extra: str
    log_dir: Path | None


@dataclasses.dataclass
class Case:
    name: str
    make_argv: object       # cmdline -> argv
    cpus: int
    counted: bool           # a failure fails the test (flick under test, not a reference)
    flags: tuple[str, ...]  # CPU flags the guest must report


def boot_once(case: Case, run: int, opts: Options, row: Row) -> bool:
    """Boots once; returns whether the boot was as expected."""
    token = f"flick_test={secrets.token_hex(4)}"
    cmdline = f"console=ttyS0 quiet panic=-1 flick_boot_timer {token} {opts.cmdline_extra}"
    r = guest_report.boot(case.make_argv(cmdline.strip()), timeout=120)
    row.results.append(r)
    if opts.log_dir:
        slug = re.sub(r"[^a-z0-9]+", "-", case.name.lower()).strip("-")
        (opts.log_dir / f"{slug}-{run + 1}.log").write_text(r.output + "\n")
    if m := BOOT_TIME_RE.search(r.output):
        row.boot_timer_us.append(int(m.group(1)))
    print(guest_report.describe(case.name, r), flush=True)
    if problems := r.problems(case.cpus, ["console=ttyS0", token], case.flags):
        print("  FAIL: " + "; ".join(problems))
        print("  output:\n    " + r.output[-4000:].replace("\n", "\n    "), flush=True)
        return False
    return True


def inside(flick: str, bzimage: Path, vmlinux: Path, initrd: Path, opts: Options,
           qemu_cpus: list[int], peers: list[str]) -> int:
    # KVM emulates the TSC-deadline LAPIC timer with an in-kernel LAPIC; flick must say so.
    cases = [Case(f"flick {kind}, {cpus} vCPU",
                  lambda c, k=kernel, n=cpus: flick_argv(flick, k, initrd, c, n), cpus, True,
                  ("tsc_deadline_timer",))
             for kernel, kind in ((bzimage, "bzImage"), (vmlinux, "vmlinux"))
             for cpus in FLICK_CPUS]
    # Other flick builds (before/after a change) and QEMU are references: their failures are
    # reported, not counted.
    cases += [Case(f"peer {i + 1} bzImage, 1 vCPU",
                   lambda c, f=peer: flick_argv(f, bzimage, initrd, c, 1), 1, False, ())
              for i, peer in enumerate(peers)]
    cases += [Case(f"qemu microvm bzImage, {cpus} vCPU",
                   lambda c, n=cpus: guest_report.qemu_microvm_argv(bzimage, initrd, c, n),
                   cpus, False, ())
              for cpus in qemu_cpus]
    rows = [Row(c.name, [], []) for c in cases]
    failures = 0
    # Round robin, so that the load of a shared machine weighs on every case alike.
    for run in range(opts.runs):
        for case, row in zip(cases, rows):
            if not boot_once(case, run, opts, row) and case.counted:
                failures += 1
    print(f"\n{'median of ' + str(opts.runs) + ' run(s), seconds':<34} {'uptime':>7} {'timer':>7} "
          f"{'to init':>7} {'total':>7}")
    for row in rows:
        print(row.line())
    for i, peer in enumerate(peers):
        print(f"peer {i + 1}: {peer}")
    print("uptime: guest /proc/uptime at init; timer: flick's boot timer (VMM start to the "
          "init's MMIO write); to init / total: wall time from starting the VMM")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flick", help="path of the flick command")
    ap.add_argument("--runs", type=int, default=1, help="boots per configuration")
    ap.add_argument("--qemu-cpus", default="1", help="vCPU counts for QEMU microvm ('' for none)")
    ap.add_argument("--cmdline-extra", default="", help="kernel parameters added to every boot")
    ap.add_argument("--log-dir", type=Path, help="keep each boot's whole output in this folder")
    ap.add_argument("--peer", action="append", default=[],
                    help="another flick command booted alike (bzImage, 1 vCPU) for comparison")
    ap.add_argument("--inside", nargs=3, metavar=("BZIMAGE", "VMLINUX", "INITRD"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    flick = str(Path(a.flick).resolve())
    qemu_cpus = [int(c) for c in a.qemu_cpus.split(",") if c]
    log_dir = a.log_dir.resolve() if a.log_dir else None
    if a.inside:
        bz, vmlinux, initrd = (Path(p) for p in a.inside)
        return inside(flick, bz, vmlinux, initrd, Options(a.runs, a.cmdline_extra, log_dir),
                      qemu_cpus, a.peer)

    peers = [str(Path(p).resolve()) for p in a.peer]
    for f in [flick, *peers]:
        if not Path(f).is_file():
            print(f"linux_boot_test: no flick command at {f}", file=sys.stderr)
            return 1
    kernel, initrd = guest_report.build_report_initramfs()
    vmlinux = extract_vmlinux.cached_vmlinux(kernel.vmlinuz)
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["python3", str(Path(__file__).resolve()), flick, "--runs", str(a.runs),
           "--qemu-cpus", a.qemu_cpus, "--cmdline-extra", a.cmdline_extra,
           *(["--log-dir", str(log_dir)] if log_dir else []),
           *(a for p in peers for a in ("--peer", p)),
           "--inside", str(kernel.vmlinuz), str(vmlinux), str(initrd)]
    if not testhost.needed():
        return main(cmd[2:])
    return testhost.run(cmd, timeout=480)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
