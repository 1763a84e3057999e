#!/usr/bin/env python3
"""Debian's stock cloud kernel, saved and restored: a guest counting on its console (with
timer sleeps, reads of the virtio-rng hardware RNG and of a virtio disk) is saved by `flick vm run --snapshot DIR
--snapshot-when TEXT` and run on by `flick vm run --restore DIR` (twice, from the same
snapshot). Each restore must go on counting where the guest was, with no second boot, its
uptime going on, and the RNG and the disk answering; then 'q' on the console powers it off.

  snapshot_linux_test.py FLICK

Runs itself inside the test host when this machine's /dev/kvm cannot run Linux.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTHOST = Path(__file__).resolve().parent.parent / "testhost"
sys.path.insert(0, str(TESTHOST))
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

# One line per count: the count, the uptime, 8 bytes from the virtio RNG, and block i of the
# virtio disk read past the page cache (it holds "block-NNNN"); 'q' ends it.
GUEST_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev 2>/dev/null
i=0
while true; do
  i=$((i+1))
  rng=$(head -c 8 /dev/hwrng | od -An -tx1 | tr -d ' \\n')
  echo 3 > /proc/sys/vm/drop_caches
  disk=$(dd if=/dev/vda bs=4096 skip=$i count=1 2>/dev/null | head -c 10)
  echo "count $i uptime $(cut -d' ' -f1 /proc/uptime) rng ${rng:-none} disk ${disk:-none}"
  if read -t 1 line && [ "$line" = q ]; then echo "counted to $i"; poweroff -f; fi
done
"""

COUNT_RE = re.compile(r"count (\d+) uptime ([0-9.]+) rng (\S+) disk (\S+)")
CMDLINE = "console=ttyS0 quiet panic=-1 pci=off"


def counts(text: str) -> list[tuple[int, float, str, str]]:
    return [(int(m[1]), float(m[2]), m[3], m[4]) for m in COUNT_RE.finditer(text)]


def restore(flick: str, snap: Path, before: str) -> list[str]:
    """Runs the snapshot on until three more counts, then sends 'q'. Returns the failures.
    `before` is the console up to the save: a line cut by the save is finished by the restore."""
    saved_at = counts(before)[-1][0]
    p = subprocess.Popen([flick, "vm", "run", "--restore", str(snap), "--memory", "256", "--timeout", "300",
                          "--disk", str(snap.parent / "disk.img")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", bufsize=1)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(p.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(c[0] >= saved_at + 3 for c in counts("".join(out))):
        if p.poll() is not None:
            break
        time.sleep(0.1)
    if p.poll() is None:
        p.stdin.write("q\n")
        p.stdin.flush()
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    reader.join(timeout=10)
    text = "".join(out)
    after = counts(text)
    whole = counts(before + text)
    failures = []
    if p.returncode != 0:
        failures.append(f"exit {p.returncode}")
    if "Linux version" in text or "Run /init" in text:
        failures.append("the restored guest booted again")
    if [c[0] for c in whole] != list(range(1, len(whole) + 1)) or len(whole) < saved_at + 3:
        failures.append(f"the count did not go on from {saved_at}: {[c[0] for c in whole]}")
    if any(b[1] < a[1] for a, b in zip(whole, whole[1:])):
        failures.append(f"uptime went back: {[c[1] for c in whole]}")
    if any(c[2] == "none" for c in whole):
        failures.append("the virtio RNG gave nothing after the restore")
    if any(c[3] != f"block-{c[0]:04d}" for c in whole):
        failures.append(f"the disk read wrong: {[c[3] for c in whole]}")
    if "counted to" not in text:
        failures.append("'q' did not reach the guest")
    print(f"restore: counts {[c[0] for c in after]} exit {p.returncode} -> {'FAIL' if failures else 'ok'}")
    if failures:
        print(text[-3000:])
    return failures


def inside(flick: str, kernel: str, initrd: str) -> int:
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="flick-snapshot-") as tmp:
        snap = Path(tmp) / "snap"
        disk = Path(tmp) / "disk.img"
        disk.write_bytes(b"".join(f"block-{i:04d}".encode().ljust(4096, b"\0") for i in range(256)))
        argv = [flick, "vm", "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256", "--disk", str(disk),
                "--cmdline", CMDLINE, "--snapshot", str(snap), "--snapshot-when", "count 3 ", "--timeout", "300"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                           stdin=subprocess.DEVNULL)
        note = f"flick: snapshot saved in {snap}\n"
        console = p.stdout.replace(note, "")
        before = counts(console)
        saved = p.returncode == 0 and note in p.stdout and before and before[-1][2] != "none"
        print(f"save: counts {[c[0] for c in before]} exit {p.returncode} -> {'ok' if saved else 'FAIL'}")
        if not saved:
            print(p.stdout[-3000:])
            return 1
        sizes = {f.name: f.stat().st_size for f in snap.iterdir()}
        used = sum(f.stat().st_blocks * 512 for f in snap.iterdir())
        print(f"snapshot files: {sizes}; {used >> 20} MiB on disk")
        for _ in range(2):  # the snapshot is left as it was: it restores twice
            failures += restore(flick, snap, console)
    print("snapshot_linux_test: " + ("PASS" if not failures else f"{len(failures)} failure(s): {failures}"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(*argv[2:5])
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    flick = str(Path(argv[1]).resolve())
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    initrd = guest_initramfs.build(kernel.root, ["virtio_mmio", "virtio_rng", "virtio_blk"], GUEST_INIT)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, str(kernel.vmlinuz), str(initrd)]
    if testhost.needed():
        return testhost.run(cmd, timeout=780)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
