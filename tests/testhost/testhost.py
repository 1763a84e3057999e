#!/usr/bin/env python3
"""The test host: a real hardware-style /dev/kvm for tests that boot real Linux guests.

This machine's /dev/kvm may be PVM, which cannot run stock Linux. The test host is Debian's
standard amd64 kernel booted by QEMU (TCG, emulated AMD-V) with kvm_amd loaded, so /dev/kvm
inside is SVM-backed. It shares this machine's root read-only over 9p, chroots into it and runs
one command with the same cwd; the work folder is shared writable. See docs/testhost.md.

  testhost.py fetch-kernel PACKAGE        download + unpack a Debian kernel into the cache
  testhost.py run [opts] -- CMD ARGS...   run CMD inside the test host, exit with its status
                                          (a hung CMD is dumped and killed: --timeout, --stall)
  testhost.py needed                      exit 0 if real Linux guests need the test host here
  testhost.py exec [opts] -- CMD ARGS...  run CMD in the test host when needed, else directly
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extract_vmlinux  # noqa: E402
import guest_initramfs  # noqa: E402
import kernel_cache  # noqa: E402
import placement  # noqa: E402

HOST_KERNEL_PACKAGE = "linux-image-amd64"
QEMU = "qemu-system-x86_64"
# Loaded at boot, with their dependencies (kvm-amd needs ccp and irqbypass): the 9p root and
# what most tests use. Each module costs boot time under TCG; load others on demand inside with
# `modprobe -d "$FLICK_TESTHOST_KERNEL" NAME` (the unpacked package, with its modules.dep).
HOST_MODULES = ["kvm_amd", "virtio_pci", "9pnet_virtio", "9p", "tun", "veth", "bridge", "loop"]
# loglevel=1 keeps kernel messages off the command's output but still shows panics (KERN_EMERG).
KERNEL_CMDLINE = "console=ttyS0 quiet loglevel=1 panic=-1 random.trust_cpu=on"
# qboot and a PVH boot of the extracted vmlinux skip SeaBIOS and the XZ decompression, both
# slow under TCG: the round trip drops from ~16 s to ~8 s.
QBOOT = Path("/usr/share/qemu/qboot.rom")
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TERM")

# The watchdog. Limits are per command: --timeout (total) and --stall (no output for that long).
# When one is hit: the outer QEMU's registers from its monitor (first: they show the hang before
# the dump disturbs it), the agent's dump (testhost_agent.sh), then QEMU is killed. Each step has
# its own bound, so a hung command fails within its limit + WATCHDOG_MARGIN seconds.
DEFAULT_TIMEOUT = 600
DEFAULT_STALL = 300
MONITOR_WAIT = 10
AGENT_WAIT = 45  # eu-stack takes a few seconds a process under TCG, gdb ~10 s or more
WATCHDOG_MARGIN = 60
MONITOR_COMMANDS = ("info cpus", "info registers -a")

EXIT_TIMEOUT = 124
EXIT_INFRA = 125
EXIT_NOT_FOUND = 127
# When the test host's emulation fails mid-command, the command runs once more, in a fresh test
# host, saying so: its emulated CPU triple-faulted (the test host just stops; QEMU logs "Triple
# fault" with -d cpu_reset); its kernel saw an idle CPU get no interrupt for many seconds (a soft
# lockup of swapper, the idle task: nothing the command runs) and the command then failed; or a
# CPU of its kernel has been stuck for WEDGED_AFTER seconds (soft lockups of the kernel itself,
# e.g. two CPUs each waiting for the other's lost IPI: a process cannot do that, and the test
# host would never recover); or the watchdog fired and the agent, a shell outside the command's
# reach, answered not one byte in AGENT_WAIT seconds: the kernel no longer schedules at all
# (seen twice with -smp 2 as VMs inside came and went: both CPUs looping in asm_exc_int3 and
# exc_int3, the int3-based live patching of static keys KVM flips, silent to the soft lockup
# detector); or its kernel panicked while the command ran (seen once under flickd_stress: a
# page fault on a zero per-CPU base, inside KVM_RUN, recursing until the stack guard page; a
# correct kernel does not panic because of what a process does, so a panic a test causes on
# purpose, as testhost_panicked_kernel's sysrq crash, counts the same). Every other failure is
# reported as it is.
# A wedge while the test host boots (before the command) counts the same. With several CPUs the
# test host boots with only CPU 0 up (maxcpus=1); testhost_init.sh brings the others up once
# kvm_keeper.py has flipped KVM's static keys, so no flip ever patches text across CPUs.
EMULATOR_FAULT_RETRIES = 1
KERNEL_PANIC = b"Kernel panic - not syncing"
WEDGED_AFTER = 120


class TestHostError(RuntimeError):
    pass


def needed(root: Path = Path("/")) -> bool:
    """True when real Linux guests cannot run on this machine's /dev/kvm directly
    (placement.py decides, FLICK_TESTHOST=always|never overrides)."""
    return placement.place("linux", root).in_testhost


def host_initramfs(kernel: kernel_cache.Kernel) -> Path:
    here = Path(__file__).resolve().parent
    init = (here / "testhost_init.sh").read_bytes()
    agent = (here / "testhost_agent.sh").read_bytes()
    return guest_initramfs.build(kernel.root, HOST_MODULES, init, {"bin/testhost_agent.sh": agent})


def _command_script(cmd: list[str], cwd: str, env: dict[str, str]) -> str:
    lines = ["# generated by testhost.py"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines.append('mkdir -p "$HOME"')
    lines.append(f"cd {shlex.quote(cwd)} || exit {EXIT_INFRA}")
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd))
    return "\n".join(lines) + "\n"


def _guest_env(workdir: Path, kernel_root: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("FLICK_")})
    env.pop("FLICK_TESTHOST", None)
    home = Path.home()
    # HOME stays where it is when the writable share holds it; otherwise it is a fresh tmpfs
    # folder, and the (read-only) cache is named explicitly so tools inside still find it.
    env["HOME"] = str(home) if home.is_relative_to(workdir) else "/tmp/testhost-home"
    env.setdefault("FLICK_CACHE_DIR", str(kernel_cache.cache_root()))
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["FLICK_IN_TESTHOST"] = "1"
    env["FLICK_TESTHOST_KERNEL"] = str(kernel_root)
    # flick answers this signal with its vCPU state; the watchdog's agent sends it.
    env.setdefault("FLICK_DUMP_SIGNAL", "SIGUSR2")
    env.update(extra)
    return env


def _qemu_opt(value: object) -> str:
    return str(value).replace(",", ",,")  # QEMU's escape for a comma inside an option value


def _check_command(cmd: list[str], cwd: Path, path: str) -> None:
    exe = cmd[0]
    found = (cwd / exe).is_file() if "/" in exe else shutil.which(exe, path=path) is not None
    if not found:
        raise FileNotFoundError(exe)


SOFT_LOCKUP = re.compile(rb"soft lockup - CPU#\d+ stuck for (\d+)s! \[([^\]]*)\]")


class _ConsoleFilter:
    """Passes the command's output through; holds back boot noise (shown only on failure)."""

    def __init__(self, nonce: str, out: BinaryIO) -> None:
        self.start = f"@@testhost-start-{nonce}@@".encode()
        self.end = f"@@testhost-end-{nonce}@@".encode()
        self.out = out
        self.state = "boot"
        self.boot_log = bytearray()
        self.partial = b""
        self.started_at: float | None = None
        self.idle_cpu_stuck: bytes | None = None  # the kernel's soft lockup line for an idle CPU
        self.wedged: bytes | None = None  # a soft lockup line of WEDGED_AFTER seconds or more
        self.panicked: bytes | None = None  # the kernel's panic line, while the command ran
        self.last_output: float | None = None  # the command's start counts as output

    def feed(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        progress = bool(self.partial)  # any byte is progress, a partial line too...
        for line in lines:
            # ...but not the kernel's reports that it is stuck: they come while nothing moves.
            progress |= not self._line(line.rstrip(b"\r") + b"\n")
        if self.state == "command" and progress:
            self.last_output = time.monotonic()

    def stalled_since(self) -> float | None:
        """When the command last made progress; None unless it runs (boot has --timeout only)."""
        return self.last_output if self.state == "command" else None

    def finish(self) -> None:
        if self.partial:
            self._line(self.partial.rstrip(b"\r"))
            self.partial = b""

    def _line(self, line: bytes) -> bool:
        """Takes one line; True if it is the kernel's soft lockup report."""
        lockup = SOFT_LOCKUP.search(line)
        if lockup and int(lockup[1]) >= WEDGED_AFTER and not self.wedged and self.state != "done":
            self.wedged = line.strip()
        if self.state == "boot":
            if self.start in line:
                self.state = "command"
                self.started_at = self.last_output = time.monotonic()
            else:
                self.boot_log += line
        elif self.state == "command":
            if lockup and lockup[2].startswith(b"swapper/"):
                self.idle_cpu_stuck = line.strip()
            if KERNEL_PANIC in line and not self.panicked:
                self.panicked = line.strip()
            # Output without a final newline shares its line with the end marker.
            end = line.find(self.end)
            if end >= 0:
                self.state = "done"
                line = line[:end]
            self.out.write(line)
            self.out.flush()
        return lockup is not None


REPO_ROOT = Path(__file__).resolve().parents[2]


def default_workdir(cwd: Path) -> Path:
    """The whole checkout when running inside it, else the cwd. Sharing the checkout (sources
    and build tree) matters when it lives under /tmp, /run or /var/tmp: the test host mounts
    fresh tmpfs there, which would hide the host's copy."""
    cwd = cwd.resolve()
    return REPO_ROOT if cwd.is_relative_to(REPO_ROOT) else cwd


def run(cmd: list[str], *, timeout: float = DEFAULT_TIMEOUT, stall: float = DEFAULT_STALL,
        memory_mib: int = 2048, smp: int = 1, workdir: Path | None = None,
        env: dict[str, str] | None = None, out: BinaryIO | None = None,
        verbose: bool = False) -> int:
    """Runs cmd inside the test host and returns its exit status.

    Output (stdout and stderr together) is written to `out` as it arrives. Failures of the test
    host itself print a message to stderr and return EXIT_TIMEOUT or EXIT_INFRA. The watchdog
    fires after `timeout` seconds in all, or when the command prints nothing for `stall`
    seconds (0: never); it prints a dump to stderr and returns EXIT_TIMEOUT."""
    out = out or sys.stdout.buffer
    cwd = Path.cwd()
    workdir = (workdir or default_workdir(cwd)).resolve()
    if not cmd:
        raise TestHostError("no command given")
    if workdir == Path("/"):
        raise TestHostError("the work folder cannot be / (the root is shared read-only)")
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise TestHostError(f"{QEMU} not found: install qemu-system-x86 (scripts/install-deps.sh)")
    kernel = kernel_cache.fetch_kernel(HOST_KERNEL_PACKAGE)
    # The log says where each test ran (placement.py explains why).
    name = Path(cmd[1] if Path(cmd[0]).name.startswith("python") and len(cmd) > 1 else cmd[0]).name
    print(f"testhost: running {name} in the test host "
          f"({placement.place('linux').why})", file=sys.stderr, flush=True)
    guest_env = _guest_env(workdir, kernel.root, env or {})
    _check_command(cmd, cwd, guest_env["PATH"])
    initrd = host_initramfs(kernel)
    vmlinux = extract_vmlinux.cached_vmlinux(kernel.vmlinuz)
    for attempt in range(EMULATOR_FAULT_RETRIES + 1):
        if attempt:
            print("testhost: running the command again in a fresh test host", file=sys.stderr,
                  flush=True)
        status = _run_once(qemu, vmlinux, initrd, cmd, cwd, workdir, guest_env, out, timeout,
                           stall, memory_mib, smp, verbose)
        if status != _EMULATOR_FAULT:
            return status
    return EXIT_INFRA


_EMULATOR_FAULT = -1


def _run_once(qemu: str, vmlinux: Path, initrd: Path, cmd: list[str], cwd: Path, workdir: Path,
              guest_env: dict[str, str], out: BinaryIO, timeout: float, stall: float,
              memory_mib: int, smp: int, verbose: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="flick-testhost-") as ctl:
        nonce = secrets.token_hex(8)
        settings = {"NONCE": nonce, "WORKDIR": str(workdir), "ROOT_CACHE": "mmap",
                    "KEEPER": str(Path(__file__).resolve().parent / "kvm_keeper.py")}
        Path(ctl, "settings").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
        Path(ctl, "cmd.sh").write_text(_command_script(cmd, str(cwd), guest_env))
        argv = [
            qemu, "-accel", "tcg", "-cpu", "EPYC,+svm,+npt", "-smp", str(smp),
            "-m", str(memory_mib), "-nodefaults", "-no-user-config", "-nographic",
            "-serial", "stdio", "-no-reboot", *(["-bios", str(QBOOT)] if QBOOT.exists() else []),
            # Why the emulated CPU reset, if it does ("Triple fault"): shown when the host stops.
            "-d", "cpu_reset", "-D", str(Path(ctl, "qemu.log")),
            # ttyS1 inside: the watchdog agent's port. QEMU listens; we connect only to ask.
            "-chardev", f"socket,id=agent,path={_qemu_opt(ctl)}/agent.sock,server=on,wait=off",
            "-serial", "chardev:agent",
            "-chardev", f"socket,id=mon,path={_qemu_opt(ctl)}/monitor.sock,server=on,wait=off",
            "-mon", "chardev=mon,mode=readline",
            "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", KERNEL_CMDLINE + (" maxcpus=1" if smp > 1 else ""),
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on",
            "-virtfs", f"local,path={_qemu_opt(ctl)},mount_tag=ctl,security_model=none",
            "-virtfs", f"local,path={_qemu_opt(workdir)},mount_tag=work,security_model=none",
        ]
        if verbose:
            print("testhost: " + " ".join(shlex.quote(a) for a in argv), file=sys.stderr)
        console = _ConsoleFilter(nonce, out)
        status = _run_qemu(argv, nonce, console, Path(ctl), timeout, stall, verbose)
        if status is None:
            code_file = Path(ctl, "status")
            status = int(code_file.read_text().strip() or EXIT_INFRA) if code_file.exists() else EXIT_INFRA
        if status not in (0, _EMULATOR_FAULT) and console.idle_cpu_stuck:
            print(f"testhost: the test host's kernel said {console.idle_cpu_stuck.decode(errors='replace')!r}: "
                  "an idle CPU got no interrupt, a fault of its emulation; the command's failure does not "
                  "count", file=sys.stderr, flush=True)
            return _EMULATOR_FAULT
        return status


def triple_faulted(log: Path) -> bool:
    """True if QEMU's cpu_reset log (-d cpu_reset -D LOG) records a triple fault."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return False
    return any(line.strip() == "Triple fault" for line in lines)


def watchdog_reason(now: float, started: float, last_output: float | None, timeout: float,
                    stall: float) -> str | None:
    """Why the watchdog fires at `now`, or None. last_output: the command's last progress
    (None while the test host boots); a limit of 0 is off."""
    if timeout and now - started >= timeout:
        return f"timed out after {timeout:g} s"
    if stall and last_output is not None and now - last_output >= stall:
        return f"no output for {stall:g} s"
    return None


def _read_until(sock: socket.socket, marker: bytes, deadline: float) -> tuple[bytes, bool]:
    """Bytes from sock up to and including marker; False if the deadline or EOF came first."""
    data = b""
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return data, False
        if not chunk:
            return data, False
        data += chunk
    return data[:data.index(marker) + len(marker)], True


def _ask(path: Path, wait: float, talk) -> str:
    """Runs talk(sock, deadline) -> str on a connection to the unix socket at path; a failure or
    an answer cut short is described, never raised: the watchdog must go on to kill QEMU."""
    deadline = time.monotonic() + wait
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(wait)
            sock.connect(str(path))
            return talk(sock, deadline)
    except OSError as e:
        return f"(no answer from {path.name}: {e})\n"


def clean_monitor_output(raw: bytes, command: str) -> str:
    """The text of one HMP answer: without the echoed command, terminal escapes and prompt."""
    text = raw.decode(errors="replace").replace("\r", "")
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\x1b[78]", "", text).removesuffix("(qemu) ")
    lines = text.split("\n")
    if lines and lines[0].strip().endswith(command):  # readline echoes what it reads
        lines = lines[1:]
    return "\n".join(lines).rstrip() + "\n"


def _monitor_query(path: Path, commands: tuple[str, ...], wait: float) -> str:
    def talk(sock: socket.socket, deadline: float) -> str:
        answer = ""
        _, ok = _read_until(sock, b"(qemu) ", deadline)  # the banner and first prompt
        for command in commands:
            if ok:
                sock.sendall(command.encode() + b"\n")
                raw, ok = _read_until(sock, b"(qemu) ", deadline)
                answer += f"({command})\n" + clean_monitor_output(raw, command)
        return answer + ("" if ok else f"(the monitor did not answer within {wait:g} s)\n")
    return _ask(path, wait, talk)


AGENT_SILENT = "(the agent answered nothing"


def _agent_dump(path: Path, nonce: str, wait: float) -> str:
    """The agent's dump; it starts with AGENT_SILENT when the agent sent not one byte."""
    def talk(sock: socket.socket, deadline: float) -> str:
        sock.sendall(f"@@testhost-dump-{nonce}@@\n".encode())
        end = f"@@testhost-dump-end-{nonce}@@".encode()
        raw, ok = _read_until(sock, end, deadline)
        if not raw.strip():
            return f"{AGENT_SILENT} within {wait:g} s: the test host's kernel is wedged)\n"
        text = raw.removesuffix(end).decode(errors="replace").replace("\r", "")
        return text + ("" if ok else f"\n(the agent did not finish within {wait:g} s)\n")
    return _ask(path, wait, talk)


def _run_qemu(argv: list[str], nonce: str, console: _ConsoleFilter, ctl: Path, timeout: float,
              stall: float, verbose: bool) -> int | None:
    """Runs QEMU to completion; returns an exit status if the test host itself failed."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    stderr_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()))
    err_reader.start()

    def pump() -> None:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            console.feed(chunk)
        console.finish()

    reader = threading.Thread(target=pump)
    reader.start()
    reason = None
    registers = dump = ""
    try:
        while reason is None:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                reason = watchdog_reason(time.monotonic(), t0, console.stalled_since(), timeout,
                                         stall)
                if console.wedged and not reason:
                    reason = f"the test host's kernel is wedged ({console.wedged.decode(errors='replace')})"
        if reason:
            print(f"testhost: watchdog: {reason}; collecting a dump, then killing QEMU",
                  file=sys.stderr, flush=True)
            registers = _monitor_query(ctl / "monitor.sock", MONITOR_COMMANDS, MONITOR_WAIT)
            dump = (_agent_dump(ctl / "agent.sock", nonce, AGENT_WAIT)
                    if console.state == "command" else "(none: the command was not running)\n")
    finally:  # also on KeyboardInterrupt: never leave QEMU behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join()
    err_reader.join()
    elapsed = time.monotonic() - t0
    boot = (console.started_at - t0) if console.started_at else None
    if verbose:
        sys.stderr.write(console.boot_log.decode(errors="replace"))
        print(f"testhost: {elapsed:.1f} s in the test host"
              + (f", {boot:.1f} s of it booting" if boot else ""), file=sys.stderr)

    def show_logs() -> None:
        sys.stderr.write("testhost: test host boot log:\n")
        sys.stderr.write(console.boot_log.decode(errors="replace"))
        sys.stderr.write(b"".join(stderr_chunks).decode(errors="replace"))

    if reason:
        sys.stderr.write(f"testhost: agent dump:\n{dump}"
                         f"testhost: outer QEMU registers:\n{registers}")
        if console.state == "boot":
            show_logs()
        print(f"testhost: watchdog: {reason}; QEMU killed after {elapsed:.1f} s",
              file=sys.stderr)
        if console.wedged or dump.startswith(AGENT_SILENT):
            print("testhost: the test host's kernel stopped for good: a fault of its emulation, "
                  "not of the command", file=sys.stderr, flush=True)
            return _EMULATOR_FAULT
        return EXIT_TIMEOUT
    if console.state != "done":
        where = "while booting" if console.state == "boot" else "while the command ran"
        print(f"testhost: the test host stopped {where} (QEMU status {proc.returncode})",
              file=sys.stderr)
        show_logs()
        if triple_faulted(ctl / "qemu.log") and console.state == "command":
            print("testhost: QEMU logged a triple fault of the test host's CPU: a fault of its "
                  "emulation, not of the command", file=sys.stderr, flush=True)
            return _EMULATOR_FAULT
        if console.panicked and console.state == "command":
            print(f"testhost: the test host's kernel panicked ({console.panicked.decode(errors='replace')}): "
                  "a fault of its emulation, not of the command", file=sys.stderr, flush=True)
            return _EMULATOR_FAULT
        return EXIT_INFRA
    return None


def _run_cli(args: argparse.Namespace, direct_ok: bool) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("testhost: no command given (usage: testhost.py run [options] -- CMD ARGS...)",
              file=sys.stderr)
        return 2
    if direct_ok and not needed():
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"testhost: cannot run {cmd[0]}: {e}", file=sys.stderr)
            return EXIT_NOT_FOUND
    extra = dict(e.split("=", 1) if "=" in e else (e, os.environ.get(e, "")) for e in args.env)
    try:
        return run(cmd, timeout=args.timeout, stall=args.stall, memory_mib=args.memory,
                   smp=args.smp, workdir=args.workdir, env=extra, verbose=args.verbose)
    except FileNotFoundError as e:
        print(f"testhost: command not found: {e.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (TestHostError, kernel_cache.KernelFetchError, guest_initramfs.InitramfsError,
            extract_vmlinux.ExtractError) as e:
        print(f"testhost: {e}", file=sys.stderr)
        return EXIT_INFRA


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="testhost.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch-kernel", help="download and unpack a Debian kernel package")
    fetch.add_argument("package")
    sub.add_parser("needed", help="exit 0 if Linux guests must run in the test host")
    for name in ("run", "exec"):
        p = sub.add_parser(name, help="run a command in the test host"
                           + (" if needed" if name == "exec" else ""))
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds in all (default {DEFAULT_TIMEOUT}); then dump and kill")
        p.add_argument("--stall", type=float, default=DEFAULT_STALL,
                       help=f"seconds without output from CMD (default {DEFAULT_STALL}, 0: off)"
                       "; then dump and kill")
        p.add_argument("--memory", type=int, default=2048, help="MiB (default 2048)")
        p.add_argument("--smp", type=int, default=1, help="vCPUs (default 1)")
        p.add_argument("--workdir", type=Path, help="writable share (default: the checkout when inside it, else the cwd)")
        p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                       help="also pass this variable (PATH, HOME, FLICK_* always pass)")
        p.add_argument("-v", "--verbose", action="store_true", help="print QEMU's command, timings")
        p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.action == "fetch-kernel":
        return kernel_cache.main([args.package])
    if args.action == "needed":
        return 0 if needed() else 1
    return _run_cli(args, direct_ok=args.action == "exec")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
