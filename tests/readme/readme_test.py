#!/usr/bin/env python3
"""The README's examples, run as a user would run them (ctest readme_examples, testhost;slow).

  readme_test.py BUILD_DIR

Installs the build into a scratch prefix (`cmake --install`), takes each example out of
README.md, and runs it against the installed flick: the C++, C and Go programs are compiled
with `pkg-config --cflags --libs flick` (Go: `go build`, offline, bindings/go by a replace
directive), all before the test host starts, as a compiler is slow under emulation; the Python one runs
with bindings/python on its path and FLICK_LIBRARY naming the installed library, the CLI and
curl blocks run in bash with the prefix's bin/ on PATH. Inside the test host when this
machine's /dev/kvm cannot run Linux.

Only what cannot work offline is changed, and each change must find its text in the README
(else the test fails, so the README cannot drift from what is tested): the image becomes a
local OCI layout (no registry here), and `exec -it` (it needs a terminal) is left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

README = ROOT / "README.md"
REGISTRY_IMAGE = "docker.io/library/busybox:latest"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)


def pick(all_blocks: list[tuple[str, str]], lang: str, marker: str) -> str:
    found = [b for lang_, b in all_blocks if lang_ == lang and marker in b]
    if len(found) != 1:
        raise SystemExit(f"README.md: expected one ```{lang} block with {marker!r}, found {len(found)}")
    return found[0]


def json_values(text: str) -> list:
    """The JSON values printed one after another in `text`."""
    values, at, decoder = [], 0, json.JSONDecoder()
    while rest := text[at:].lstrip():
        try:
            value, at = decoder.raw_decode(text, len(text) - len(rest))
        except json.JSONDecodeError:
            break
        values.append(value)
    return values


def replace(text: str, old: str, new: str, what: str) -> str:
    if old not in text:
        raise SystemExit(f"README.md: the {what} example no longer contains {old!r}: update this test")
    return text.replace(old, new)


class Inside:
    """Runs the examples as a user whose HOME and XDG_RUNTIME_DIR are fresh folders in /tmp (a
    local file system: the work folder may be a share that cannot hold Unix sockets)."""

    def __init__(self, work: str, image: str) -> None:
        self.work = Path(work)
        self.image = image
        self.prefix = self.work / "prefix"
        self.user = Path(tempfile.mkdtemp(prefix="flick-readme-"))
        self.failures: list[str] = []
        self.env = dict(os.environ)
        self.env.update({
            "HOME": str(self.user / "home"),
            "XDG_RUNTIME_DIR": str(self.user / "run"),
            "PATH": f"{self.prefix / 'bin'}:{self.env.get('PATH', '/usr/bin:/bin')}",
            "LD_LIBRARY_PATH": str(self.prefix / "lib"),
            "FLICK_LIBRARY": str(next(self.prefix.rglob("libflick.so.*[0-9]"))),  # for the Python binding
        })
        for k in ("FLICK_STATE_DIR", "FLICK_HOME", "FLICK_CACHE_DIR"):
            self.env.pop(k, None)  # the defaults under HOME, as the README's paths assume
        (self.user / "home").mkdir()
        (self.user / "run").mkdir(mode=0o700)

    def check(self, ok: bool, what: str) -> None:
        print(("ok: " if ok else "FAIL: ") + what, flush=True)
        if not ok:
            self.failures.append(what)

    def run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.work)
        print(f"$ {' '.join(argv)[:120]}\n  -> {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}", flush=True)
        return r

    def compiled(self, name: str) -> Path:
        exe = self.work / name.replace(".", "_")
        self.check(exe.exists(), f"{name} compiled against the installed flick (before the test host started)")
        return exe

    def cpp(self) -> None:
        exe = self.compiled("example.cpp")
        if exe.exists():
            r = self.run([str(exe)])
            self.check(r.returncode == 0 and re.search(r"^hello from \S+", r.stdout, re.M) is not None,
                       "the C++ example runs its machine and prints its greeting")

    def c(self) -> None:
        exe = self.compiled("example.c")
        if exe.exists():
            r = self.run([str(exe)])
            try:
                machine = json.loads(r.stdout)
            except json.JSONDecodeError:
                machine = {}
            self.check(r.returncode == 0 and machine.get("state") == "started",
                       f"the C example prints a started machine ({machine.get('state')})")

    def python(self, source: str) -> None:
        (self.work / "example.py").write_text(source)
        self.env["PYTHONPATH"] = str(ROOT / "bindings" / "python")
        r = self.run([sys.executable, str(self.work / "example.py")])
        self.check(r.returncode == 0 and re.match(r"0 \d+\.\d+\S*\n\['\w+'\]\n$", r.stdout) is not None,
                   "the Python example execs uname -r in its machine and lists it")

    def go(self) -> None:
        exe = self.work / "go_example"
        if not exe.exists():
            self.check(False, "the Go example runs (it did not build)")
            return
        r = self.run([str(exe)])
        self.check(r.returncode == 0 and re.match(r"0 \d+\.\d+", r.stdout) is not None,
                   "the Go example execs uname -r in its machine")

    def cli(self, script: str) -> None:
        r = self.run(["bash", "-euo", "pipefail", "-c", script])
        self.check(r.returncode == 0, "the CLI example runs")
        self.check(re.search(r"^bin$", r.stdout, re.M) is not None and "ID" in r.stdout,
                   "it lists the machine and execs ls /")
        left = self.run(["flick", "machine", "list", "--json"])
        self.check(left.returncode == 0 and json.loads(left.stdout or "[]") == [], "it leaves no machine")

    def rest(self, script: str) -> None:
        # The README starts flickd in the background and uses it at once; a user types the next
        # line later. Here the rest waits for flickd's socket.
        start, rest = script.split("\n", 1)
        flickd = subprocess.Popen(["bash", "-c", start.removesuffix("&").strip()], env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sock = self.user / "run" / "flick" / "api.sock"
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            r = self.run(["bash", "-euo", "pipefail", "-c", rest])
            self.check(r.returncode == 0, "the curl example runs")
            answers = json_values(r.stdout)
            created = answers[-1] if answers else {}
            self.check(len(answers) == 2 and answers[0] == [] and bool(created.get("id")),
                       f"it lists no machine, then creates one ({str(created)[:200]})")
            if created.get("id"):
                self.run(["flick", "machine", "destroy", "--force", created["id"]])
        finally:
            flickd.terminate()
            flickd.wait(timeout=30)


def inside(work: str, image: str) -> int:
    s = Inside(work, image)
    all_blocks = blocks(README.read_text())
    s.cpp()
    s.c()
    s.python(replace(pick(all_blocks, "python", "flick.Host()"), REGISTRY_IMAGE, image, "Python"))
    s.go()
    cli = replace(pick(all_blocks, "sh", "flick machine create"), REGISTRY_IMAGE, image, "CLI")
    cli = "\n".join(line for line in cli.splitlines() if "exec -it" not in line)
    s.cli(cli)
    s.rest(replace(pick(all_blocks, "sh", "flickd --listen"), REGISTRY_IMAGE, image, "curl"))
    shutil.rmtree(s.user, ignore_errors=True)
    print("PASS" if not s.failures else f"{len(s.failures)} failure(s)", flush=True)
    return 1 if s.failures else 0


def compile_examples(work: Path, pc_path: str, image: str) -> None:
    """Compiles the README's C++ and C examples into work/example_cpp and work/example_c with
    `pkg-config --cflags --libs flick` (a failure is printed; the run inside then fails for want
    of the program). Here, not in the test host: a compiler under emulation takes minutes."""
    all_blocks = blocks(README.read_text())
    sources = {
        "example.cpp": ("c++", "-std=c++20", replace(pick(all_blocks, "cpp", "flick::Host::open"),
                                                     REGISTRY_IMAGE, image, "C++")),
        "example.c": ("cc", "-std=c11", replace(pick(all_blocks, "c", "flick_host_open"), '\\"image\\": \\"busybox\\"',
                                                f'\\"image\\": \\"{image}\\"', "C")),
    }
    env = {**os.environ, "PKG_CONFIG_PATH": pc_path}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "flick"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    for name, (compiler, std, source) in sources.items():
        (work / name).write_text(source)
        r = subprocess.run([compiler, std, "-Wall", "-Werror", "-o", str(work / name.replace(".", "_")),
                            str(work / name), *flags], env=env, capture_output=True, text=True)
        print(f"{compiler} {name}: {r.returncode}\n{r.stdout}{r.stderr}", flush=True)


def go_env(work: Path, pc_path: str) -> dict[str, str]:
    """Offline, with the installed flick found through pkg-config."""
    return {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOENV": "off", "CGO_ENABLED": "1",
            "GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"), "PKG_CONFIG_PATH": pc_path}


def go_build(work: Path, pc_path: str, image: str) -> None:
    """Builds the README's Go example into work/go_example (a failure is printed; the run
    inside then fails for want of the program)."""
    src = work / "go"
    src.mkdir()
    (src / "go.mod").write_text(f"module example.com/readme\n\ngo 1.19\n\nrequire flick.dev/flick v0.0.0\n\n"
                                f"replace flick.dev/flick => {ROOT / 'bindings' / 'go'}\n")
    (src / "main.go").write_text(replace(pick(blocks(README.read_text()), "go", "flick.OpenHost"),
                                         REGISTRY_IMAGE, image, "Go"))
    r = subprocess.run(["go", "build", "-o", str(work / "go_example"), "."], cwd=src, env=go_env(work, pc_path),
                       capture_output=True, text=True)
    print(f"go build of the README's Go example: {r.returncode}\n{r.stdout}{r.stderr}", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--inside"] and len(argv) == 3:
        return inside(argv[1], argv[2])
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    work = Path.cwd() / "readme_test.work"
    image, pc_path = install(Path(argv[0]), work)
    compile_examples(work, pc_path, image)
    go_build(work, pc_path, image)
    return run_inside(Path(__file__), work, image, {"PKG_CONFIG_PATH": pc_path})


def install(build: Path, work: Path) -> tuple[str, str]:
    """Installs `build` into work/prefix (a fresh work folder) and makes a busybox OCI layout
    in work/layout: returns the image's reference and the PKG_CONFIG_PATH finding flick.pc."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(["cmake", "--install", str(build.resolve()), "--prefix", str(work / "prefix")], check=True,
                   stdout=subprocess.DEVNULL)
    image = subprocess.run([sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(work / "layout")],
                           check=True, capture_output=True, text=True).stdout.strip()
    return image, ":".join(str(p.parent) for p in (work / "prefix").rglob("flick.pc"))


def run_inside(script: Path, work: Path, image: str, env: dict[str, str]) -> int:
    """Runs `script --inside WORK IMAGE` with Debian's cloud kernel for the guests, in a one-CPU
    test host when this machine's /dev/kvm cannot run Linux; removes the work folder when it
    passes."""
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    env = {**env, "FLICK_KERNEL": str(kernel.vmlinuz),
           "FLICK_KERNEL_MODULES": str(kernel.root / "lib" / "modules" / kernel.release)}
    cmd = [sys.executable, str(script.resolve()), "--inside", str(work), image]
    if testhost.needed():
        code = testhost.run(cmd, timeout=900, memory_mib=2048, smp=1, env=env)
    else:
        code = subprocess.run(cmd, env={**os.environ, **env}).returncode
    if code == 0:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
