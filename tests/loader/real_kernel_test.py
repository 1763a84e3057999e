#!/usr/bin/env python3
"""Runs the loader's real-kernel tests on Debian's cloud kernel: fetches it into flick's cache
(apt-get download, never installed), extracts the vmlinux, and runs LOADER_REAL_KERNEL_TEST
(tests/loader/real_kernel_test.cpp) with FLICK_TEST_KERNEL / FLICK_TEST_VMLINUX set.

  real_kernel_test.py LOADER_REAL_KERNEL_TEST
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testhost"))
import extract_vmlinux  # noqa: E402
import kernel_cache  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    env = dict(os.environ, FLICK_TEST_KERNEL=str(kernel.vmlinuz),
               FLICK_TEST_VMLINUX=str(extract_vmlinux.cached_vmlinux(kernel.vmlinuz)))
    r = subprocess.run([argv[1]], env=env, capture_output=True, text=True)
    print(r.stdout + r.stderr)
    if "[  SKIPPED ]" in r.stdout:
        print("real_kernel_test: a test skipped although the kernel was given")
        return 1
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
