#!/usr/bin/env python3
"""Boots a flick test guest under QEMU microvm and checks how it ended.

  qemu_testguest.py IMAGE [--accel tcg|kvm] [--smp N] [--mem MIB] [--mode MODE]
                    [--ending poweroff|reset|hang] [--expect TEXT ...]

poweroff: QEMU must exit by itself with status 0 after one guest run.
reset:    the machine must reset: the guest starts a second time (QEMU is then stopped).
hang:     QEMU must still be running at the timeout.
The first run must print "flick-testguest: PASS" and no "FAIL" line.
"""
import argparse
import selectors
import subprocess
import sys
import time

START = "flick-testguest: start"


def run_qemu(cmd, timeout, stop_at_second_start):
    """Returns (lines of the first guest run(s), exit status or None, seconds, starts seen)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    start = time.monotonic()
    buf, lines, starts = b"", [], 0
    try:
        while time.monotonic() - start < timeout:
            if not sel.select(timeout=0.1):
                if proc.poll() is not None:
                    break
                continue
            chunk = proc.stdout.read1(4096)
            if not chunk:
                proc.wait()
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").rstrip("\r")
                starts += text == START
                if starts <= 1:
                    lines.append(text)
            if stop_at_second_start and starts >= 2:
                break
    finally:
        elapsed = time.monotonic() - start
        rc = proc.poll()
        if rc is None:
            proc.kill()
            proc.wait()
    return lines, rc, elapsed, starts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("image")
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--accel", default="tcg")
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--mem", type=int, default=64)
    p.add_argument("--mode", default="poweroff")
    p.add_argument("--ending", choices=["poweroff", "reset", "hang"], default="poweroff")
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()

    cmdline = f"testguest cpus={a.smp} mem={a.mem} mode={a.mode} qemu"
    cmd = [a.qemu, "-M", "microvm,acpi=on", "-accel", a.accel, "-m", str(a.mem),
           "-smp", str(a.smp), "-nodefaults", "-no-user-config", "-nographic",
           "-serial", "stdio", "-kernel", a.image, "-append", cmdline]
    if a.accel == "kvm":
        cmd += ["-cpu", "host"]
    timeout = 3 if a.ending == "hang" else a.timeout
    print("+", " ".join(cmd), flush=True)
    lines, rc, elapsed, starts = run_qemu(cmd, timeout, True)
    print("\n".join(lines))
    print(f"-- exit {rc}, {elapsed:.3f} s, guest started {starts} time(s)")

    problems = []
    if "flick-testguest: PASS" not in lines:
        problems.append("no PASS line")
    problems += [f"guest reported: {l}" for l in lines if l.startswith("FAIL")]
    problems += [f"missing {e!r}" for e in a.expect if not any(e in l for l in lines)]
    if a.ending == "poweroff" and (rc != 0 or starts != 1):
        problems.append(f"expected one run and exit status 0 (power-off), got {starts} run(s), "
                        f"status {rc}")
    if a.ending == "reset" and starts < 2:
        problems.append(f"expected a reset (a second guest start), got status {rc}")
    if a.ending == "hang" and (rc is not None or starts != 1):
        problems.append(f"expected the guest to hang, got status {rc} after {starts} run(s)")
    for m in problems:
        print("ERROR:", m)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
