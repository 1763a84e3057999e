#!/usr/bin/env python3
"""check_skips.py against a real ctest run: a tiny project whose tests pass, skip by return
code, skip by output (as gtest's "[  SKIPPED ]") and cannot run at all."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = [sys.executable, str(HERE / "check_skips.py")]

PROJECT = r"""
cmake_minimum_required(VERSION 3.20)
project(skips NONE)
enable_testing()
add_test(NAME passes COMMAND sh -c "echo 'kvm_test: running probe directly on /dev/kvm (fixture)'")
add_test(NAME skips_by_code COMMAND sh -c "exit 77")
set_tests_properties(skips_by_code PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME skips_by_output COMMAND sh -c "echo '[  SKIPPED ] Foo.Bar'")
set_tests_properties(skips_by_output PROPERTIES SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
add_test(NAME cannot_run COMMAND /nonexistent/test-binary)
"""


class CheckSkips(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        src, build = Path(cls.tmp.name, "src"), Path(cls.tmp.name, "build")
        src.mkdir()
        (src / "CMakeLists.txt").write_text(PROJECT)
        subprocess.run(["cmake", "-S", src, "-B", build], check=True, capture_output=True)
        cls.junit = Path(cls.tmp.name, "junit.xml")
        subprocess.run(["ctest", "--output-junit", cls.junit], cwd=build, capture_output=True)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def check(self, allowed: str) -> subprocess.CompletedProcess[str]:
        allow = Path(self.tmp.name, "allowed.txt")
        allow.write_text(allowed)
        return subprocess.run([*CHECK, "--allowed", allow, self.junit], capture_output=True,
                              text=True)

    def test_every_skip_and_not_run_fails(self) -> None:
        r = self.check("# nothing allowed\n")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for name in ("skips_by_code", "skips_by_output", "cannot_run"):
            self.assertIn(f"FAIL: {name}:", r.stderr)
        self.assertNotIn("passes", r.stderr)
        self.assertIn("3 test(s) skipped or not run", r.stderr)

    def test_listed_skips_are_allowed_with_their_reason(self) -> None:
        r = self.check("skips_by_.*  # tested elsewhere\ncannot_run # needs a binary\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("skips_by_code: not run", r.stdout)

    def test_where_each_test_ran_is_printed(self) -> None:
        r = self.check("skips_by_.*\ncannot_run\n")
        self.assertIn("where: passes: running probe directly on /dev/kvm (fixture)", r.stdout)

    def test_summary_counts_what_ran(self) -> None:
        r = subprocess.run([*CHECK, "--summary", self.junit], capture_output=True, text=True)
        self.assertEqual(r.stdout.strip(), "tests: 1 passed, 0 failed")

    def test_a_pattern_matches_whole_names_only(self) -> None:
        r = self.check("skips\ncannot\n")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
