#!/usr/bin/env python3
"""Fails when ctest skipped or did not run a test, unless tests/allowed-skips.txt lists it.

  check_skips.py [--allowed FILE] JUNIT_XML...   (files written by `ctest --output-junit`)
  check_skips.py --summary JUNIT_XML...          one closing line: "tests: N passed, N failed"

It also prints where each test that needs KVM ran (the lines kvm_test.py and testhost.py
write), so the log shows it although ctest keeps passing tests' output to itself.

A skipped test proves nothing: on a machine without /dev/kvm a silent skip would let CI pass
without ever running the VMM. Each line of allowed-skips.txt is a regular expression matched
against the whole test name, then `#` and the reason.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ALLOWED = Path(__file__).resolve().parent / "allowed-skips.txt"


def allowed_patterns(path: Path = ALLOWED) -> list[re.Pattern[str]]:
    patterns = []
    for line in path.read_text().splitlines():
        rule = line.split("#", 1)[0].strip()
        if rule:
            patterns.append(re.compile(rule))
    return patterns


def not_run(junit: Path) -> list[tuple[str, str]]:
    """(test name, why) for each test ctest skipped or did not run."""
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        status = case.get("status", "run")
        skipped = case.find("skipped")
        if status in ("notrun", "disabled") or skipped is not None:
            why = skipped.get("message", status) if skipped is not None else status
            found.append((case.get("name", "?"), why))
    return found


WHERE_PREFIXES = ("testhost: running ", "kvm_test: running ")


def where_tests_ran(junit: Path) -> list[str]:
    """'TEST: where' for each test whose output says where it ran."""
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        out = case.findtext("system-out") or ""
        for line in out.splitlines():
            if line.startswith(WHERE_PREFIXES):
                found.append(f"{case.get('name', '?')}: {line.split(': ', 1)[1]}")
    return found


def summary(junits: list[Path]) -> str:
    passed = failed = 0
    for junit in junits:
        for case in ET.parse(junit).getroot().iter("testcase"):
            status = case.get("status", "run")
            if status == "fail" or case.find("failure") is not None:
                failed += 1
            elif status == "run":
                passed += 1
    return f"tests: {passed} passed, {failed} failed"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--summary"]:
        print(summary([Path(a) for a in argv[1:]]))
        return 0
    allowed = ALLOWED
    if argv[:1] == ["--allowed"] and len(argv) >= 2:
        allowed, argv = Path(argv[1]), argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    patterns = allowed_patterns(allowed)
    bad = []
    for junit in map(Path, argv):
        for where in where_tests_ran(junit):
            print(f"check_skips: where: {where}")
        for name, why in not_run(junit):
            if any(p.fullmatch(name) for p in patterns):
                print(f"check_skips: {name}: not run ({why}), allowed by {allowed}")
            else:
                bad.append(f"{name}: {why}")
    for b in bad:
        print(f"check_skips: FAIL: {b}", file=sys.stderr)
    if bad:
        print(f"check_skips: {len(bad)} test(s) skipped or not run; a skip is a failure here "
              f"(fix the test, or list it in {allowed} with the reason)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
