#!/usr/bin/env python3
"""The test host's watchdog on a stuck flick VM (ctest testhost_watchdog, labels testhost;slow).

  watchdog_test.py FLICK TESTGUEST_PVH

Runs `flick vm run` of the test guest in mode=hang (`cli; hlt` forever: the vCPU thread sleeps
in KVM_RUN, the test host goes idle, as in the CI hangs) through `testhost.py run` with a short
--stall, and checks that the watchdog fails it in time with status 124 and the whole dump: the
process tree, flick's thread stacks, flick's vCPU state ("flick-dump:" lines, flick's answer to
FLICK_DUMP_SIGNAL) and the outer QEMU's registers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import testhost  # noqa: E402

# The stall limit fires first (the guest prints its checks, then nothing); the total limit only
# has to cover the test host's boot (10-30 s on a loaded machine) and the stall.
STALL = 20
TIMEOUT = 180


def dump_sections(text: str) -> dict[str, str]:
    """The agent dump's sections ("== heading" lines), heading -> body."""
    sections: dict[str, str] = {}
    heading = None
    for line in text.splitlines(keepends=True):
        if line.startswith("== "):
            heading = line[3:].strip()
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line
    return sections


def problems(output: str, status: int, elapsed: float, stall: float, timeout: float) -> list[str]:
    """What is missing from a watchdog run of a stuck flick VM; empty when all is there."""
    found = []
    if status != testhost.EXIT_TIMEOUT:
        found.append(f"exit status {status}, expected {testhost.EXIT_TIMEOUT}")
    if elapsed > timeout + testhost.WATCHDOG_MARGIN:
        found.append(f"took {elapsed:.0f} s, more than {timeout:g} + "
                     f"{testhost.WATCHDOG_MARGIN} s")
    if f"testhost: watchdog: no output for {stall:g} s" not in output:
        found.append("no watchdog heading for the stall")
    dump, _, registers = output.partition("testhost: agent dump:\n")[2] \
        .partition("testhost: outer QEMU registers:\n")
    sections = dump_sections(dump)
    tree = sections.get("process tree of the command (pid ppid state wchan command)", "")
    if not re.search(r"^\d+ \d+ \S+ \S+ \S*flick vm run", tree, re.M):
        found.append("no flick process in the process tree")
    stacks = "".join(body for head, body in sections.items()
                     if re.fullmatch(r"thread stacks of pid \d+ \(flick\)", head))
    if not re.search(r"\bioctl\b|flick::vmm::Vcpu", stacks):
        found.append("no thread stack of flick (a frame naming ioctl or flick::vmm::Vcpu)")
    if not (re.search(r"RIP=[0-9a-f]{16}", registers) and re.search(r"[RE]FL=", registers)):
        found.append("no outer QEMU registers (RIP=, RFL=)")
    if not re.search(r"^flick-dump:.*\bvcpu 0\b", output, re.M):
        found.append("no 'flick-dump: ... vcpu 0' line (flick's answer to FLICK_DUMP_SIGNAL)")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    flick, guest = (str(Path(a).resolve()) for a in argv)
    cmd = [sys.executable, str(HERE / "testhost.py"), "run", "--timeout", str(TIMEOUT),
           "--stall", str(STALL), "--", flick, "vm", "run", "--kernel", guest,
           "--cmdline", "testguest mode=hang"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - t0
    output = r.stdout.decode(errors="replace")
    print(output)
    found = problems(output, r.returncode, elapsed, STALL, TIMEOUT)
    print(f"watchdog test: status {r.returncode} after {elapsed:.1f} s "
          f"(stall {STALL} s, timeout {TIMEOUT} s)")
    for p in found:
        print(f"  FAIL: {p}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
