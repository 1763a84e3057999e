#!/usr/bin/env python3
"""Boot time of Debian's cloud kernel: flick's VMM against QEMU microvm, same kernel+initramfs,
same run (inside the test host when this machine's /dev/kvm cannot run Linux).

  bench/linux_boot_compare.py [FLICK] [--runs N] [--qemu-cpus 1,2]

FLICK defaults to build/dev/bin/flick. Prints one line per boot and a table of medians.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
import linux_boot_test  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        args = [str(ROOT / "build" / "dev" / "bin" / "flick")] + args
    if "--runs" not in args:
        args += ["--runs", "3"]
    sys.exit(linux_boot_test.main(args))
