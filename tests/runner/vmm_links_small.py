#!/usr/bin/env python3
"""flick-vmm links base, vmm, virtio, runner and store: liburing and SQLite, never libcurl,
libarchive or libext2fs (whose dependency trees made process start slow). Checks its
NEEDED entries with readelf and that it starts and answers --version."""
import subprocess
import sys

FORBIDDEN = ("libcurl", "libarchive", "libext2fs", "libcom_err", "libssl", "libcrypto", "libzstd", "libgnutls")
REQUIRED = ("liburing", "libsqlite3")


def main() -> int:
    vmm = sys.argv[1]
    dyn = subprocess.run(["readelf", "-d", vmm], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    print("flick-vmm needs:", " ".join(needed))
    bad = [n for n in needed if n.startswith(FORBIDDEN)]
    missing = [r for r in REQUIRED if not any(n.startswith(r) for n in needed)]
    if bad:
        print("flick-vmm must not link:", " ".join(bad))
    if missing:
        print("flick-vmm should link:", " ".join(missing))
    version = subprocess.run([vmm, "--version"], capture_output=True, text=True)
    if version.returncode != 0 or not version.stdout.startswith("flick-vmm "):
        print("flick-vmm --version failed:", version.returncode, version.stdout, version.stderr)
        return 1
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main())
