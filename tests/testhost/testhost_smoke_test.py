#!/usr/bin/env python3
"""Smoke tests of the test host (ctest labels testhost;slow).

  testhost_smoke_test.py kvm      boot the test host with 2 CPUs; inside, /dev/kvm exists, the
                                  CPU has svm, a real-mode guest runs on each CPU (kvm_probe.py),
                                  kvm_keeper.py holds its VM and both CPUs are up
  testhost_smoke_test.py microvm  boot Debian's cloud kernel with QEMU microvm inside the test
                                  host, with 1 and 2 vCPUs; check the guest's report and print
                                  the boot timings (the peer measurement for flick's VMM)
  testhost_smoke_test.py reset    a command that triple-faults the test host's CPU the first
                                  time runs again in a fresh test host and its status counts
  testhost_smoke_test.py silent   the same for a test host whose agent answers nothing when
                                  the watchdog fires (as when its kernel is wedged)
  testhost_smoke_test.py panic    the same for a test host whose kernel panics
"""

from __future__ import annotations

import io
import os
import secrets
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import guest_report  # noqa: E402
import testhost  # noqa: E402

CPU_COUNTS = (1, 2)


def kvm_smoke() -> int:
    # Two CPUs: the second comes up after the keeper (maxcpus=1), and KVM runs a guest there too.
    status = testhost.run(["sh", "-c", 'python3 "$0/kvm_probe.py" --require-svm && '
                           'taskset -c 1 python3 "$0/kvm_probe.py" && '
                           'python3 "$0/testhost_smoke_test.py" keeper-inside', str(HERE)],
                           timeout=300, smp=2)
    print(f"kvm smoke test: status {status}")
    return 0 if status == 0 else 1


def keeper_inside() -> int:
    """kvm_keeper.py runs beside the command, holding one VM with two vCPUs; every CPU is up."""
    cpus = Path("/sys/devices/system/cpu")
    online, present = ((cpus / f).read_text().strip() for f in ("online", "present"))
    print(f"CPUs online {online}, present {present}")
    if online != present:
        return 1
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"kvm_keeper.py" not in (proc / "cmdline").read_bytes():
                continue
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        vms = [l for l in links if l.startswith("anon_inode:kvm-vm")]
        vcpus = sorted(l for l in links if l.startswith("anon_inode:kvm-vcpu"))
        print(f"kvm_keeper: pid {proc.name}, {len(vms)} VM, vCPUs {vcpus}")
        return 0 if len(vms) == 1 and len(vcpus) == 2 else 1
    print("kvm_keeper: not running in the test host")
    return 1


def microvm_outer() -> int:
    kernel, initrd = guest_report.build_report_initramfs()
    status = testhost.run(["python3", str(Path(__file__).resolve()), "microvm-inside",
                           str(kernel.vmlinuz), str(initrd)], timeout=400)
    print(f"microvm test: status {status}")
    return 0 if status == 0 else 1


def microvm_inside(vmlinuz: str, initrd: str) -> int:
    failures = 0
    for cpus in CPU_COUNTS:
        token = f"flick_test={secrets.token_hex(4)}"
        cmdline = f"console=ttyS0 quiet panic=-1 {token}"
        argv = guest_report.qemu_microvm_argv(Path(vmlinuz), Path(initrd), cmdline, cpus)
        r = guest_report.boot(argv, timeout=120)
        print(guest_report.describe(f"qemu microvm, {cpus} vCPU", r), flush=True)
        problems = r.problems(cpus, ["console=ttyS0", token])
        if problems:
            failures += 1
            print("  FAIL: " + "; ".join(problems))
            print("  output:\n    " + r.output.replace("\n", "\n    "))
        else:
            print(f"  ok: {r.report['cpus']} CPUs, ACPI tables {r.report['acpi']}")
    return 1 if failures else 0


# The first run marks the work folder, then reboots the test host by a triple fault (Linux's
# "triple" reboot type: an empty IDT and int3); the second run finds the mark and exits 3.
TRIPLE_FAULT_ONCE = """
if [ ! -e "$1/mark" ]; then
  touch "$1/mark" && sync
  echo triple >/sys/kernel/reboot/type && echo b >/proc/sysrq-trigger
  sleep 30
  echo "still running after the reboot request"
  exit 1
fi
echo "second run"
exit 3
"""


# The first run silences the watchdog's agent, as a wedged kernel does (it kills it), then
# prints nothing; the watchdog's stall limit fires and the agent answers nothing.
SILENT_ONCE = """
if [ ! -e "$1/mark" ]; then
  touch "$1/mark" && sync
  pkill -f 'testhost_[a]gent.sh'  # [a]: not this script's own command line
  sleep 600
  echo "still running after the watchdog fired"
  exit 1
fi
echo "second run"
exit 3
"""


# The first run marks the work folder, then crashes the test host's kernel (a sysrq crash: a
# kernel panic, then the test host stops).
PANIC_ONCE = """
if [ ! -e "$1/mark" ]; then
  touch "$1/mark" && sync
  echo 1 >/proc/sys/kernel/sysrq && echo c >/proc/sysrq-trigger
  sleep 30
  echo "still running after the crash"
  exit 1
fi
echo "second run"
exit 3
"""


def retried(what: str, script: str, **limits: float) -> int:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
        out = io.BytesIO()
        status = testhost.run(["sh", "-c", script, "sh", work], out=out, **limits)  # type: ignore[arg-type]
    output = out.getvalue().decode(errors="replace")
    print(output)
    print(f"{what} test: status {status}")
    ok = status == 3 and "second run" in output and "still running" not in output
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["reset"]:
        return retried("reset", TRIPLE_FAULT_ONCE, timeout=300)
    if argv[:1] == ["panic"]:
        return retried("panic", PANIC_ONCE, timeout=300)
    if argv[:1] == ["silent"]:
        return retried("silent agent", SILENT_ONCE, timeout=300, stall=20)
    if argv[:1] == ["kvm"]:
        return kvm_smoke()
    if argv[:1] == ["keeper-inside"]:
        return keeper_inside()
    if argv[:1] == ["microvm"]:
        return microvm_outer()
    if argv[:1] == ["microvm-inside"] and len(argv) == 3:
        return microvm_inside(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
