#!/usr/bin/env python3
"""`flick machine run` and the Machine API with Debian's cloud kernel and a busybox image.

Outside: fetches the kernel, builds two busybox OCI layouts (plain, and one whose config sets
Env, WorkingDir and User). Inside the test host (or directly on a real KVM host):
  - `flick machine run` cases: output and exit code, image config and overrides, a stop that
    ends in SIGKILL after the timeout, a missing entrypoint (127 with the reason), a corrupt
    rootfs, a kernel that panics, --rm leaving nothing behind, `flick machine exec` (also
    -it and `console`, driven through a PTY) and `flick machine run --shell`;
  - the Machine API suite (machine_linux_api_test): blank-slate root and persistent volumes
    across stop/start and destroy, graceful and forced stops, restart on-failure, signals, exec.

FLICK_TEST_ONLY=PART[,PART...] runs only the cases (and API tests) whose names contain a PART.

  machine_linux_test.py FLICK MACHINE_LINUX_API_TEST
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

BOOT_TIMEOUT = 300


class Cases:
    def __init__(self, flick: str, image: str, image_conf: str, kernel: str, modules: str) -> None:
        self.flick, self.image, self.image_conf = flick, image, image_conf
        self.kernel_args = ["--kernel", kernel, "--kernel-modules", modules]
        self.work = Path(tempfile.mkdtemp(prefix="flick-machine-run-"))
        # Machine state in the working directory: in the test host that is its 9p share, which
        # has no O_TMPFILE for the copy-on-write overlay.
        self.state = Path(tempfile.mkdtemp(prefix="state-", dir=Path.cwd()))
        self.env = dict(os.environ, FLICK_HOME=str(self.work / "cache"), FLICK_STATE_DIR=str(self.state),
                        XDG_RUNTIME_DIR=str(self.work / "run"))
        self.failures: list[str] = []

    def expect(self, ok: bool, what: str, out: str = "") -> None:
        if not ok:
            self.failures.append(what + (f"\n--- output ---\n{out}" if out else ""))

    def run(self, *args: str, image: str | None = None, env: dict[str, str] | None = None,
            on_line=None) -> tuple[int, str, float]:
        argv = [self.flick, "machine", "run", image or self.image, *self.kernel_args, *args]
        print("$", " ".join(argv), flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or self.env)
        assert proc.stdout is not None
        timer = threading.Timer(BOOT_TIMEOUT * 2, proc.kill)
        timer.start()
        lines = []
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            print(line, end="", flush=True)
            lines.append(line)
            if on_line:
                on_line(line, proc)
        rc = proc.wait()
        timer.cancel()
        return rc, "".join(lines), time.monotonic() - t0

    def exit_code_and_output(self) -> None:
        rc, out, _ = self.run("--rm", "--", "sh", "-c", "echo hi; exit 3")
        self.expect(rc == 3, f"exit 3 expected, got {rc}", out)
        self.expect("hi\n" in out.replace("\r", ""), "'hi' missing", out)
        # The program's own terminal is a serial port apart from the kernel's console.
        for noise in ("reboot: Power down", "flick-init", '"event"'):
            self.expect(noise not in out, f"{noise!r} is not the program's output", out)

    def image_config_and_overrides(self) -> None:
        probe = 'echo "probe user=$(id -un) cwd=$(pwd) from=$FROM_IMAGE extra=$EXTRA home=$HOME"'
        rc, out, _ = self.run("--rm", "--", "sh", "-c", probe, image=self.image_conf)
        self.expect(rc == 0, f"image config run: exit {rc}", out)
        self.expect("probe user=app cwd=/srv from=image extra= home=/home/app" in out,
                    "image Env/WorkingDir/User not honoured", out)
        rc, out, _ = self.run("--rm", "--user", "nobody", "--workdir", "/tmp", "-e", "FROM_IMAGE=machine",
                              "-e", "EXTRA=1", "--", "sh", "-c", probe, image=self.image_conf)
        self.expect(rc == 0, f"override run: exit {rc}", out)
        self.expect("probe user=nobody cwd=/tmp from=machine extra=1 home=/nonexistent" in out,
                    "machine overrides not honoured", out)

    def stop_times_out_into_sigkill(self) -> None:
        sent: list[float] = []

        def on_line(line: str, proc: subprocess.Popen) -> None:
            if line.startswith("ready") and not sent:
                sent.append(time.monotonic())
                proc.send_signal(signal.SIGINT)

        rc, out, _ = self.run("--rm", "--stop-timeout", "2", "--", "sh", "-c",
                              "trap '' INT; echo ready; while true; do sleep 1; done", on_line=on_line)
        took = time.monotonic() - sent[0] if sent else 0
        self.expect(bool(sent), "the program never printed ready", out)
        self.expect(rc == 128 + 9, f"a stop ending in SIGKILL should exit 137, got {rc}", out)
        self.expect(2 <= took < 60, f"the stop took {took:.1f} s, not the 2 s timeout plus shutdown", out)

    def missing_entrypoint(self) -> None:
        rc, out, _ = self.run("--rm", "--entrypoint", "/no/such/program")
        self.expect(rc == 127, f"a missing entrypoint should exit 127, got {rc}", out)
        self.expect("/no/such/program" in out and "No such file" in out, "the reason is not given", out)

    def kernel_panic(self) -> None:
        rc, out, _ = self.run("--rm", "--kernel-arg", "rdinit=/missing-init", "--", "true")
        self.expect(rc == 125, f"a panicking kernel should exit 125, got {rc}", out)
        said = [l for l in out.splitlines() if l.startswith("flick: machine") and "rebooted" in l]
        self.expect(len(said) == 1 and "Kernel panic - not syncing: VFS: Unable to mount root fs" in said[0],
                    f"flick's error does not show the panic: {said}", out)

    def corrupt_rootfs(self) -> None:
        env = dict(self.env, FLICK_HOME=str(self.work / "corrupt-cache"))
        subprocess.run([self.flick, "image", "rootfs", self.image, "-o", str(self.work / "copy.img")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        built = list((self.work / "corrupt-cache" / "rootfs").rglob("*.ext4"))
        self.expect(len(built) == 1, f"expected one cached rootfs, found {built}")
        if len(built) != 1:
            return
        os.chmod(built[0], 0o644)
        with open(built[0], "r+b") as f:  # the superblock
            f.seek(1024)
            f.write(b"\0" * 1024)
        rc, out, _ = self.run("--rm", "--", "true", env=env)
        self.expect(rc != 0, "a corrupt rootfs ran", out)
        self.expect("/dev/vda" in out and "mount" in out, "the error does not say the root failed to mount", out)

    def rm_leaves_nothing(self) -> None:
        machines = self.state / "machines"
        left = sorted(p.name for p in machines.iterdir()) if machines.exists() else []
        self.expect(not left, f"--rm left machines behind: {left}")
        run_dir = self.work / "run" / "flick"
        files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if not p.is_dir())
        self.expect(not files, f"--rm left files in the run directory: {files}")
        rc, out, _ = self.run("--verbose", "--", "true")  # without --rm the stopped machine stays
        kept = sorted(p.name for p in machines.iterdir())
        self.expect(rc == 0 and len(kept) == 1, f"without --rm: exit {rc}, machines {kept}", out)
        self.expect("reboot: Power down" in out, "--verbose does not show the kernel's console", out)
        if len(kept) == 1:  # the machine's log keeps the whole console
            logs = subprocess.run([self.flick, "machine", "logs", kept[0]], env=self.env, stdout=subprocess.PIPE,
                                  text=True, errors="replace").stdout
            self.expect("reboot: Power down" in logs, "the machine's log lacks the kernel's console", logs)

    def exec_into_a_started_machine(self) -> None:
        def flick(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
            print("$ flick", " ".join(args), flush=True)
            return subprocess.run([self.flick, *args], env=self.env, capture_output=True, text=True,
                                  input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                                  timeout=BOOT_TIMEOUT)

        made = flick("machine", "create", self.image, *self.kernel_args, "--start-timeout", str(BOOT_TIMEOUT),
                     "--", "sh", "-c", "while true; do sleep 1; done")
        self.expect(made.returncode == 0, f"create: exit {made.returncode}", made.stderr)
        if made.returncode != 0:
            return
        mid = made.stdout.strip()
        for step in (("start", mid), ("wait", mid, "--timeout", str(BOOT_TIMEOUT))):
            r = flick("machine", *step)
            self.expect(r.returncode == 0, f"{step[0]}: exit {r.returncode}", r.stderr)
        r = flick("machine", "exec", mid, "--", "sh", "-c", "echo out; echo err >&2; exit 4")
        self.expect((r.returncode, r.stdout, r.stderr) == (4, "out\n", "err\n"),
                    f"exec: exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
        r = flick("machine", "exec", mid, "-e", "GREETING=hi there", "--workdir", "/tmp", "--",
                  "sh", "-c", 'echo "$GREETING from $(pwd)"; cat', stdin="piped\n")
        self.expect((r.returncode, r.stdout) == (0, "hi there from /tmp\npiped\n"),
                    f"exec with stdin: exit {r.returncode}, stdout {r.stdout!r}", r.stderr)
        r = flick("machine", "exec", mid, "--json", "--", "sh", "-c", "echo json; kill -TERM $$")
        try:
            body = json.loads(r.stdout)
        except ValueError:
            body = {}
        self.expect(r.returncode == 128 + 15 and body == {"stdout": "json\n", "stderr": "", "exit_code": -1,
                                                          "exit_signal": 15},
                    f"exec --json: exit {r.returncode}, {r.stdout!r}", r.stderr)
        r = flick("machine", "exec", mid, "--timeout", "1", "--", "sleep", "100")
        self.expect(r.returncode == 125 and "did not finish within" in r.stderr,
                    f"exec --timeout: exit {r.returncode}, stderr {r.stderr!r}")
        self.interactive_shell(["machine", "exec", "-it", mid, "--", "sh"], resize=True)
        self.interactive_shell(["machine", "console", mid])
        flick("machine", "stop", mid)
        r = flick("machine", "exec", mid, "--", "true")
        self.expect(r.returncode == 125 and "stopped" in r.stderr,
                    f"exec on a stopped machine: exit {r.returncode}, stderr {r.stderr!r}")
        flick("machine", "destroy", mid)

    def interactive_shell(self, argv: list[str], resize: bool = False) -> None:
        """A shell that `argv` gives, driven through a PTY as a person at a terminal: a command
        typed and its output read, the window size (at start, and after a resize), `exit 3`."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        argv = [self.flick, *argv]
        print("$", " ".join(argv), flush=True)
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=dict(self.env, TERM="dumb"))
        os.close(slave)
        seen = b""

        def until(needle: bytes, timeout: float = 60) -> bool:
            nonlocal seen
            end = time.monotonic() + timeout
            while needle not in seen and time.monotonic() < end:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    try:
                        seen += os.read(master, 4096)
                    except OSError:
                        break
            return needle in seen

        os.write(master, b"echo $((6*7))x; stty size\r")
        self.expect(until(b"42x") and until(b"33 101"), "the shell did not answer, or not at 33x101", seen.decode(errors="replace"))
        if resize:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            proc.send_signal(signal.SIGWINCH)
            time.sleep(1)
            os.write(master, b"stty size\r")
            self.expect(until(b"40 120"), "the new window size did not reach the guest", seen.decode(errors="replace"))
        os.write(master, b"exit 3\r")
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        until(b"\0", 0.5)  # what is left
        os.close(master)
        self.expect(rc == 3, f"{argv[1:3]}: `exit 3` should end it with 3, got {rc}", seen.decode(errors="replace"))

    def run_shell(self) -> None:
        listed = ["machine", "list", "--json"]
        before = json.loads(subprocess.run([self.flick, *listed], env=self.env, capture_output=True).stdout or "[]")
        self.interactive_shell(["machine", "run", self.image, *self.kernel_args, "--start-timeout", str(BOOT_TIMEOUT),
                                "--shell"])
        after = json.loads(subprocess.run([self.flick, *listed], env=self.env, capture_output=True).stdout or "[]")
        self.expect(len(after) == len(before), f"run --shell left a machine: {len(before)} before, {len(after)} after")


def inside(flick: str, api_test: str, image: str, image_conf: str, kernel: str, modules: str) -> int:
    cases = Cases(flick, image, image_conf, kernel, modules)
    # Parts of case names, comma-separated: run only those (while developing).
    only = [p for p in os.environ.get("FLICK_TEST_ONLY", "").split(",") if p]
    for case in (cases.exit_code_and_output, cases.image_config_and_overrides, cases.stop_times_out_into_sigkill,
                 cases.missing_entrypoint, cases.kernel_panic, cases.corrupt_rootfs, cases.rm_leaves_nothing,
                 cases.exec_into_a_started_machine, cases.run_shell):
        if only and not any(p.lower() in case.__name__.lower() for p in only):
            continue
        print(f"=== {case.__name__}", flush=True)
        case()
    shutil.rmtree(cases.work, ignore_errors=True)
    shutil.rmtree(cases.state, ignore_errors=True)

    print("=== Machine API", flush=True)
    env = dict(os.environ, FLICK_TEST_IMAGE=image, FLICK_TEST_KERNEL=kernel, FLICK_TEST_MODULES=modules)
    api = subprocess.run([api_test] + ([f"--gtest_filter={':'.join(f'*{p}*' for p in only)}"] if only else []),
                         env=env).returncode
    if api != 0:
        cases.failures.append(f"machine_linux_api_test exited {api}")
    for f in cases.failures:
        print(f"FAIL: {f}", flush=True)
    print("PASS" if not cases.failures else f"{len(cases.failures)} failure(s)", flush=True)
    return 0 if not cases.failures else 1


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(*argv[2:8])
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    flick, api_test = (str(Path(a).resolve()) for a in argv[1:3])
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    work = Path.cwd() / "machine_linux_test.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    build = [sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(work / "layout")]
    image = subprocess.run(build, check=True, capture_output=True, text=True).stdout.strip()
    image_conf = subprocess.run(build + ["--tag", "conf", "--env", "FROM_IMAGE=image", "--workdir", "/srv",
                                         "--user", "app"], check=True, capture_output=True, text=True).stdout.strip()
    modules = kernel.root / "lib" / "modules" / kernel.release
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flick, api_test, image, image_conf,
           str(kernel.vmlinuz), str(modules)]
    if testhost.needed():
        return testhost.run(cmd, timeout=1680, memory_mib=3072)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
