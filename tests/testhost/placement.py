#!/usr/bin/env python3
"""Where a test that needs KVM runs: directly on this machine's /dev/kvm, or in the test host.

Machines differ (see docs/testhost.md):
  none      no usable /dev/kvm                      -> everything runs in the test host
  pvm       /dev/kvm from the kvm_pvm module        -> small test guests run directly (slowly);
                                                       stock Linux cannot, so it uses the test host
  hardware  /dev/kvm on a CPU with vmx or svm       -> everything runs directly
  other     /dev/kvm, neither PVM nor vmx/svm flags -> treated like pvm

A test says what it needs: `small` (the freestanding test guests, a few thousand instructions)
or `linux` (a real Linux guest). FLICK_TESTHOST=always|never overrides the choice.

  placement.py [--root DIR] [--needs small|linux]   prints the kind, the choice and why
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

NEEDS = ("small", "linux")


@dataclass(frozen=True)
class Placement:
    kind: str        # none | pvm | hardware | other
    in_testhost: bool
    why: str

    def describe(self) -> str:
        return ("in the test host" if self.in_testhost else "directly on /dev/kvm") + f" ({self.why})"


def kvm_kind(root: Path = Path("/")) -> str:
    """What /dev/kvm is under `root` (a fixture tree in tests, / otherwise)."""
    dev = root / "dev/kvm"
    if not dev.exists() or not os.access(dev, os.R_OK | os.W_OK):
        return "none"
    if (root / "sys/module/kvm_pvm").exists():
        return "pvm"
    try:
        cpuinfo = (root / "proc/cpuinfo").read_text()
    except OSError:
        return "other"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return "hardware" if {"vmx", "svm"} & flags else "other"


_WHY = {
    "none": "no usable /dev/kvm here",
    "pvm": "a PVM /dev/kvm",
    "hardware": "hardware virtualization",
    "other": "a /dev/kvm without vmx/svm or PVM",
}


def place(needs: str, root: Path = Path("/"), override: str | None = None) -> Placement:
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {', '.join(NEEDS)}, not {needs!r}")
    kind = kvm_kind(root)
    override = (os.environ.get("FLICK_TESTHOST", "") if override is None else override).lower()
    if override in ("always", "never"):
        return Placement(kind, override == "always", f"FLICK_TESTHOST={override}; {_WHY[kind]}")
    if kind == "none":
        return Placement(kind, True, _WHY[kind])
    if kind == "hardware":
        return Placement(kind, False, _WHY[kind])
    if needs == "small":
        return Placement(kind, False, _WHY[kind] + ", which runs the small test guests")
    return Placement(kind, True, _WHY[kind] + ", which cannot run stock Linux")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="placement.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/"))
    ap.add_argument("--needs", choices=NEEDS, default="linux")
    args = ap.parse_args(argv)
    p = place(args.needs, args.root)
    print(f"kvm: {p.kind}\nneeds {args.needs}: {p.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
