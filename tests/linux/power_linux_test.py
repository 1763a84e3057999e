#!/usr/bin/env python3
"""Debian's stock cloud kernel ends a flick VM three ways, each with its own reason:
`poweroff` (exit 0), `reboot` (exit 0, "guest ended: reboot"), and a kernel panic with
panic=-1 and the pvpanic driver loaded (exit 1, "guest ended: kernel panic").

  power_linux_test.py FLICK

Runs itself inside the test host when this machine's /dev/kvm cannot run Linux.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTHOST = Path(__file__).resolve().parent.parent / "testhost"
sys.path.insert(0, str(TESTHOST))
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

# The init picks its ending from the command line (flick_end=...).
GUEST_INIT = """#!/bin/sh
mount -t proc proc /proc
end=$(sed -n 's/.*flick_end=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
echo "ending: $end"
case "$end" in
  poweroff) poweroff -f ;;
  reboot) reboot -f ;;
  panic) echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger ;;
esac
sleep 1000
"""

CASES = [  # (ending, expected exit status, expected stderr line or None)
    ("poweroff", 0, None),
    ("reboot", 0, "flick: guest ended: reboot"),
    ("panic", 1, "flick: guest ended: kernel panic"),
]


def inside(flick: str, kernel: str, initrd: str) -> int:
    failures = 0
    for ending, want_status, want_line in CASES:
        argv = [flick, "vm", "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256",
                "--cmdline", f"console=ttyS0 quiet panic=-1 pci=off flick_end={ending}",
                "--timeout", "200"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace")
        out = p.stdout
        ok = p.returncode == want_status and f"ending: {ending}" in out and (
            want_line is None or want_line in out)
        if want_line is None and "guest ended" in out:
            ok = False
        print(f"{ending}: exit {p.returncode} -> {'ok' if ok else 'FAIL'}")
        if not ok:
            print(out[-3000:])
            failures += 1
    print("power_linux_test: " + ("PASS" if not failures else f"{failures} failure(s)"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(*argv[2:5])
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    flick = str(Path(argv[1]).resolve())
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    # pvpanic-mmio binds to the DSDT's QEMU0001 device and reports the panic before the reset.
    initrd = guest_initramfs.build(kernel.root, ["pvpanic_mmio"], GUEST_INIT)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, str(kernel.vmlinuz), str(initrd)]
    if testhost.needed():
        return testhost.run(cmd, timeout=780)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
