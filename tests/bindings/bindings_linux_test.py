#!/usr/bin/env python3
"""The bindings on real Linux guests, against the installed library (ctest bindings_linux_e2e,
testhost;slow).

  bindings_linux_test.py BUILD_DIR

Installs the build into a scratch prefix (`cmake --install`), builds the Go programs with the
installed flick found through pkg-config (before the test host starts: a compiler under
emulation takes minutes), then, inside the test host when this machine's /dev/kvm cannot run
Linux, as a user with a fresh HOME, with the Python binding installed into a venv as its README
says:

- bindings/python/examples/orchestrator.py and bindings/go/examples/orchestrator, unchanged,
  with a local busybox image as their argument: each makes an app's three machines, execs in
  one, lists them, stops and destroys them, leaving nothing behind; each one's wall time is
  printed ("orchestrator wall time: LANGUAGE S s");
- the end-to-end suites: pytest bindings/python/tests_linux and bindings/go's
  `linuxguest`-tagged tests (`go test -tags linuxguest -c`), with the image in FLICK_TEST_IMAGE.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "readme"))
from readme_test import Inside, go_env, install, run_inside  # noqa: E402

GO_PROGRAMS = {
    "go_orchestrator": ["build", "-o", "{out}", "./examples/orchestrator"],
    "go_linuxguest.test": ["test", "-tags", "linuxguest", "-c", "-o", "{out}", "."],
}


def pytest_python() -> str:
    """The first python3 with pytest: Debian's, which scripts/install-deps.sh equips, may come
    after another python3 on PATH."""
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import pytest"], capture_output=True).returncode == 0:
            return py
    return sys.executable  # its failure to import pytest is then the test's failure


class Bindings(Inside):
    def __init__(self, work: str, image: str) -> None:
        super().__init__(work, image)
        self.venv_python = str(self.work / "venv" / "bin" / "python")

    def left_nothing(self, what: str, app: str) -> None:
        machines = self.run(["flick", "machine", "list", "--json"])
        apps = self.run(["flick", "app", "list", "--json"])
        self.check(machines.returncode == 0 and json.loads(machines.stdout or "[]") == []
                   and apps.returncode == 0 and app not in {a.get("name") for a in json.loads(apps.stdout or "[]")},
                   f"{what} leaves no machine, and no app {app}")

    def orchestrator(self, language: str, argv: list[str], app: str, listed: str) -> None:
        t0 = time.monotonic()
        r = self.run(argv)
        print(f"orchestrator wall time: {language} {time.monotonic() - t0:.1f} s", flush=True)
        exec_line = re.search(r"^exec.*: exit 0: (hello from|Linux) \S+", r.stdout, re.M)
        started = re.findall(listed, r.stdout, re.M)
        self.check(r.returncode == 0 and exec_line is not None and len(started) == 3,
                   f"the {language} orchestrator starts three machines, execs in one and lists them "
                   f"(exec: {exec_line is not None}, listed started: {len(started)})")
        self.left_nothing(f"the {language} orchestrator", app)

    def suite(self, what: str, argv: list[str], passed: str) -> None:
        r = subprocess.run(argv, env={**self.env, "FLICK_TEST_IMAGE": self.image}, cwd=self.work,
                           capture_output=True, text=True, timeout=600)
        print(f"$ {' '.join(argv)[-80:]}\n  -> {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-2000:]}", flush=True)
        self.check(r.returncode == 0 and passed in r.stdout, f"the {what} end-to-end suite passes on a real guest")


def inside(work: str, image: str) -> int:
    s = Bindings(work, image)
    s.orchestrator("Python", [s.venv_python, str(ROOT / "bindings" / "python" / "examples" / "orchestrator.py"),
                              image], app="orchestra", listed=r"^\S+\s+worker-\d\s+started$")
    s.orchestrator("Go", [str(s.work / "go_orchestrator"), image], app="shop", listed=r"^\S+ web-\d started$")
    s.suite("Python binding's", [s.venv_python, "-m", "pytest", "-p", "no:cacheprovider", "-v",
                                 str(ROOT / "bindings" / "python" / "tests_linux")], passed=" passed")
    s.suite("Go binding's", [str(s.work / "go_linuxguest.test"), "-test.v", "-test.count=1",
                                "-test.run", "TestLinuxGuest"],
            passed="--- PASS: TestLinuxGuest")
    shutil.rmtree(s.user, ignore_errors=True)
    print("PASS" if not s.failures else f"{len(s.failures)} failure(s)", flush=True)
    return 1 if s.failures else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--inside"] and len(argv) == 3:
        return inside(argv[1], argv[2])
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    work = Path.cwd() / "bindings_linux_test.work"
    image, pc_path = install(Path(argv[0]), work)
    for name, argv_ in GO_PROGRAMS.items():
        r = subprocess.run(["go", *[a.format(out=work / name) for a in argv_]], cwd=ROOT / "bindings" / "go",
                           env=go_env(work, pc_path), capture_output=True, text=True)
        print(f"go build of {name}: {r.returncode}\n{r.stdout}{r.stderr}", flush=True)
        if r.returncode != 0:
            return 1
    # The binding as its README installs it: into a venv, from a copy (the source tree stays clean).
    shutil.copytree(ROOT / "bindings" / "python", work / "python-src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    subprocess.run([pytest_python(), "-m", "venv", "--system-site-packages", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", "--no-index", "--no-build-isolation",
                    str(work / "python-src")], check=True)
    return run_inside(Path(__file__), work, image, {})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
