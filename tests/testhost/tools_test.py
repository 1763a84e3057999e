#!/usr/bin/env python3
"""Unit tests of the test host tooling that need neither QEMU nor a downloaded kernel."""

from __future__ import annotations

import gzip
import io
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extract_vmlinux  # noqa: E402
import guest_initramfs  # noqa: E402
import guest_report  # noqa: E402
import testhost  # noqa: E402
import watchdog_test  # noqa: E402


def fake_modules_dir(root: Path) -> Path:
    d = root / "lib" / "modules" / "6.1.0-test"
    (d / "kernel" / "x").mkdir(parents=True)
    deps = {
        "kernel/x/kvm-amd.ko": ["kernel/x/ccp.ko", "kernel/x/kvm.ko", "kernel/x/irqbypass.ko"],
        "kernel/x/kvm.ko": ["kernel/x/irqbypass.ko"],
        "kernel/x/ccp.ko": [],
        "kernel/x/irqbypass.ko": [],
        "kernel/x/tun.ko": [],
    }
    (d / "modules.dep").write_text("".join(f"{k}: {' '.join(v)}\n" for k, v in deps.items()))
    (d / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    for k in deps:
        (d / k).write_bytes(b"\x7fELF module " + k.encode())
    return d


def cpio_names(archive_gz: Path) -> list[str]:
    out = subprocess.run(["cpio", "-t", "--quiet"], input=gzip.decompress(archive_gz.read_bytes()),
                         capture_output=True, check=True).stdout
    return out.decode().split()


class ModuleOrderTest(unittest.TestCase):
    def test_dependencies_come_first_and_once(self):
        with tempfile.TemporaryDirectory() as t:
            d = fake_modules_dir(Path(t))
            order = guest_initramfs.module_load_order(d, ["kvm_amd", "kvm", "tun", "ext4"])
            self.assertEqual(order, ["kernel/x/ccp.ko", "kernel/x/irqbypass.ko", "kernel/x/kvm.ko",
                                     "kernel/x/kvm-amd.ko", "kernel/x/tun.ko"])

    def test_unknown_module_is_an_error(self):
        with tempfile.TemporaryDirectory() as t:
            d = fake_modules_dir(Path(t))
            with self.assertRaisesRegex(guest_initramfs.InitramfsError, "no module 'nosuch'"):
                guest_initramfs.module_load_order(d, ["nosuch"])


class InitramfsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.root = Path(self.tmp.name)
        patcher = mock.patch.dict(os.environ, {"FLICK_CACHE_DIR": str(self.root / "cache")})
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_contents_and_determinism(self):
        fake_modules_dir(self.root / "k")
        extra = self.root / "tool"
        extra.write_bytes(b"#!/bin/sh\necho tool\n")
        extra.chmod(0o755)
        a = guest_initramfs.build(self.root / "k", ["kvm-amd nested=0"], "#!/bin/sh\necho hi\n",
                                  {"usr/bin/tool": extra}, self.root / "a.cpio.gz")
        b = guest_initramfs.build(self.root / "k", ["kvm-amd nested=0"], "#!/bin/sh\necho hi\n",
                                  {"usr/bin/tool": extra}, self.root / "b.cpio.gz")
        self.assertEqual(a.read_bytes(), b.read_bytes())
        names = cpio_names(a)
        for n in ("init", "init.user", "bin/busybox", "bin/sh", "dev/console", "usr/bin/tool",
                  "lib/modules/kernel/x/kvm-amd.ko", "lib/modules/kernel/x/irqbypass.ko"):
            self.assertIn(n, names)
        self.assertNotIn("lib/modules/kernel/x/tun.ko", names)
        init = subprocess.run(["cpio", "-i", "--to-stdout", "--quiet", "init"],
                              input=gzip.decompress(a.read_bytes()), capture_output=True).stdout
        lines = [l for l in init.decode().splitlines() if l.startswith("insmod")]
        self.assertEqual([l.split()[1] for l in lines],
                         ["/lib/modules/kernel/x/ccp.ko", "/lib/modules/kernel/x/irqbypass.ko",
                          "/lib/modules/kernel/x/kvm.ko", "/lib/modules/kernel/x/kvm-amd.ko"])
        self.assertIn("kvm-amd.ko nested=0 ", lines[-1])

    def test_different_init_gives_a_different_archive(self):
        fake_modules_dir(self.root / "k")
        a = guest_initramfs.build(self.root / "k", [], "#!/bin/sh\necho a\n")
        b = guest_initramfs.build(self.root / "k", [], "#!/bin/sh\necho b\n")
        self.assertNotEqual(a, b)


def fake_bzimage(payload: bytes, setup_sects: int = 3) -> bytes:
    img = bytearray((setup_sects + 1) * 512)
    img[0x1F1] = setup_sects
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, 0x20F)
    struct.pack_into("<II", img, 0x248, 0x40, len(payload))
    return bytes(img) + bytes(0x40) + payload + bytes(16)


class ExtractVmlinuxTest(unittest.TestCase):
    VMLINUX = b"\x7fELF" + bytes(range(256)) * 64

    def test_gzip_payload(self):
        payload = gzip.compress(self.VMLINUX) + struct.pack("<I", len(self.VMLINUX))
        self.assertEqual(extract_vmlinux.extract(fake_bzimage(payload)), self.VMLINUX)

    def test_lz4_payload(self):
        comp = subprocess.run(["lz4", "-l", "-c"], input=self.VMLINUX, capture_output=True,
                              check=True).stdout
        payload = comp + struct.pack("<I", len(self.VMLINUX))
        self.assertEqual(extract_vmlinux.extract(fake_bzimage(payload)), self.VMLINUX)

    def test_size_mismatch_is_reported(self):
        payload = gzip.compress(self.VMLINUX) + struct.pack("<I", 5)
        with self.assertRaisesRegex(extract_vmlinux.ExtractError, "the image says 5"):
            extract_vmlinux.extract(fake_bzimage(payload))

    def test_not_a_bzimage(self):
        with self.assertRaisesRegex(extract_vmlinux.ExtractError, "not a bzImage"):
            extract_vmlinux.extract(bytes(4096))


class ConsoleFilterTest(unittest.TestCase):
    def test_passes_only_the_command_output(self):
        out = io.BytesIO()
        f = testhost._ConsoleFilter("n1", out)
        for chunk in (b"SeaBIOS\r\nboot noise\r\n@@testhost-st", b"art-n1@@\r\nhello\r\nwor",
                      b"ld\r\n@@testhost-end-n1@@\r\npower off\r\n"):
            f.feed(chunk)
        f.finish()
        self.assertEqual(out.getvalue(), b"hello\nworld\n")
        self.assertEqual(f.state, "done")
        self.assertIn(b"boot noise", bytes(f.boot_log))

    def test_output_without_final_newline_is_kept(self):
        out = io.BytesIO()
        f = testhost._ConsoleFilter("n1", out)
        f.feed(b"@@testhost-start-n1@@\r\nno newline@@testhost-end-n1@@\r\n")
        self.assertEqual(out.getvalue(), b"no newline")
        self.assertEqual(f.state, "done")

    def test_an_idle_cpu_stuck_is_noted(self):
        f = testhost._ConsoleFilter("n1", io.BytesIO())
        f.feed(b"@@testhost-start-n1@@\n[  500.08] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! "
               b"[flick-vmm:301]\n")
        self.assertIsNone(f.idle_cpu_stuck)  # a busy task: maybe the command's doing
        f.feed(b"[  500.08] watchdog: BUG: soft lockup - CPU#0 stuck for 271s! [swapper/0:0]\r\n")
        self.assertEqual(f.idle_cpu_stuck,
                         b"[  500.08] watchdog: BUG: soft lockup - CPU#0 stuck for 271s! [swapper/0:0]")

    def test_a_kernel_panic_while_the_command_runs_is_noted(self):
        f = testhost._ConsoleFilter("n1", io.BytesIO())
        f.feed(b"[    0.40] Kernel panic - not syncing: VFS: a boot-time one, not the command's\n")
        self.assertIsNone(f.panicked)
        f.feed(b"@@testhost-start-n1@@\n[   32.58] BUG: TASK stack guard page was hit\n")
        self.assertIsNone(f.panicked)
        f.feed(b"[   32.69] Kernel panic - not syncing: Fatal exception in interrupt\r\n")
        self.assertEqual(f.panicked, b"[   32.69] Kernel panic - not syncing: Fatal exception in interrupt")

    def test_a_cpu_stuck_for_good_is_noted_and_is_no_progress(self):
        f = testhost._ConsoleFilter("n1", io.BytesIO())
        f.feed(b"@@testhost-start-n1@@\n")
        started = f.stalled_since()
        time.sleep(0.01)
        f.feed(b"[   96.88] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [flick-vm:206]\n")
        self.assertIsNone(f.wedged)  # a host under load can stall a CPU this long, then go on
        f.feed(b"[  208.88] watchdog: BUG: soft lockup - CPU#0 stuck for 127s! [flick-vm:206]\r\n")
        self.assertEqual(f.wedged,
                         b"[  208.88] watchdog: BUG: soft lockup - CPU#0 stuck for 127s! [flick-vm:206]")
        self.assertIsNone(f.idle_cpu_stuck)
        self.assertEqual(f.stalled_since(), started)  # the kernel's complaints are not output
        f.feed(b"the command goes on\n")
        self.assertGreater(f.stalled_since(), started)

    def test_a_cpu_stuck_for_good_while_booting_is_noted(self):
        f = testhost._ConsoleFilter("n1", io.BytesIO())
        f.feed(b"[  156.85] watchdog: BUG: soft lockup - CPU#1 stuck for 131s! [kworker/1:1:29]\n")
        self.assertEqual(f.state, "boot")
        self.assertEqual(f.wedged, b"[  156.85] watchdog: BUG: soft lockup - CPU#1 stuck for 131s! [kworker/1:1:29]")

    def test_spoofed_marker_with_another_nonce_is_output(self):
        out = io.BytesIO()
        f = testhost._ConsoleFilter("n1", out)
        f.feed(b"@@testhost-start-n1@@\n@@testhost-end-xx@@\n")
        self.assertEqual(out.getvalue(), b"@@testhost-end-xx@@\n")
        self.assertEqual(f.state, "command")


class WatchdogTest(unittest.TestCase):
    def test_limits(self):
        reason = testhost.watchdog_reason
        self.assertIsNone(reason(100, 0, 90, timeout=600, stall=300))
        self.assertEqual(reason(600, 0, 590, timeout=600, stall=300), "timed out after 600 s")
        self.assertEqual(reason(400, 0, 100, timeout=600, stall=300), "no output for 300 s")
        self.assertIsNone(reason(400, 0, None, timeout=600, stall=300))  # still booting
        self.assertIsNone(reason(5000, 0, 0, timeout=0, stall=0))  # both off

    def test_progress_is_any_output_of_the_running_command(self):
        f = testhost._ConsoleFilter("n1", io.BytesIO())
        f.feed(b"boot noise\n")
        self.assertIsNone(f.stalled_since())
        f.feed(b"@@testhost-start-n1@@\n")
        started = f.stalled_since()
        self.assertIsNotNone(started)
        time.sleep(0.01)
        f.feed(b"a partial line")
        self.assertGreater(f.stalled_since(), started)
        f.feed(b"\n@@testhost-end-n1@@\n")
        self.assertIsNone(f.stalled_since())

    def test_monitor_echo_and_escapes_are_dropped(self):
        raw = (b"i\x1b[K\x1b[Din\x1b[K\x1b[D\x1b[Dinfo cpus\x1b[K\r\n"
               b"* CPU #0: thread_id=8373\r\n(qemu) ")
        self.assertEqual(testhost.clean_monitor_output(raw, "info cpus"),
                         "* CPU #0: thread_id=8373\n")

    def serve(self, path: Path, answer) -> None:
        """A one-connection unix socket server sending what answer(connection) yields."""
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(str(path))
        srv.listen(1)
        self.addCleanup(srv.close)

        def loop():
            conn, _ = srv.accept()
            with conn:
                for reply in answer(conn):
                    conn.sendall(reply)
                time.sleep(2)  # keeps the connection open like a hung peer
        threading.Thread(target=loop, daemon=True).start()

    def test_monitor_query(self):
        with tempfile.TemporaryDirectory() as t:
            sock = Path(t, "monitor.sock")

            def monitor(conn):
                yield b"QEMU 7.2 monitor\r\n(qemu) "
                conn.recv(100)
                yield b"info cpus\r\n* CPU #0: thread_id=1\r\n(qemu) "
                # no answer to the second command
            self.serve(sock, monitor)
            t0 = time.monotonic()
            text = testhost._monitor_query(sock, ("info cpus", "info registers"), wait=0.5)
            self.assertLess(time.monotonic() - t0, 1.5)
            self.assertIn("(info cpus)\n* CPU #0: thread_id=1\n", text)
            self.assertIn("did not answer within 0.5 s", text)

    def test_agent_dump_is_bounded_and_partial_answers_are_kept(self):
        with tempfile.TemporaryDirectory() as t:
            sock = Path(t, "agent.sock")
            requests = []

            def agent(conn):
                requests.append(conn.recv(100))
                yield b"== process tree\r\n1 0 S\r\n"
            self.serve(sock, agent)
            text = testhost._agent_dump(sock, "n1", wait=0.5)
            self.assertEqual(requests, [b"@@testhost-dump-n1@@\n"])
            self.assertIn("== process tree\n1 0 S\n", text)
            self.assertIn("the agent did not finish within 0.5 s", text)
            text = testhost._agent_dump(Path(t, "none.sock"), "n1", wait=0.5)
            self.assertIn("no answer from none.sock", text)
            self.assertFalse(text.startswith(testhost.AGENT_SILENT))

    def test_an_agent_that_answers_nothing_is_told_apart(self):
        with tempfile.TemporaryDirectory() as t:
            sock = Path(t, "agent.sock")

            def agent(conn):  # reads the request, as a wedged kernel's serial port would not
                conn.recv(100)
                yield b""
            self.serve(sock, agent)
            text = testhost._agent_dump(sock, "n1", wait=0.5)
            self.assertTrue(text.startswith(testhost.AGENT_SILENT), text)


class AgentTest(unittest.TestCase):
    """testhost_agent.sh on this machine: a pty stands in for ttyS1, the root is /."""

    def test_dump(self):
        # The command: a shell with two children, one answering FLICK_DUMP_SIGNAL like flick.
        responder = ("import signal, sys, time\n"
                     "signal.signal(signal.SIGUSR2, lambda *a: print('flick-dump: vcpu 0',"
                     " file=sys.stderr, flush=True))\n"
                     "print('ready', flush=True)\n"
                     "time.sleep(60)\n")
        with tempfile.TemporaryDirectory() as t:
            out = Path(t, "out")
            with open(out, "wb") as f:
                cmd = subprocess.Popen(
                    ["sh", "-c", 'sleep 60 & exec "$0" -c "$1"', sys.executable, responder],
                    stdout=f, stderr=f, env={**os.environ, "FLICK_DUMP_SIGNAL": "SIGUSR2"},
                    start_new_session=True)
            self.addCleanup(lambda: (os.killpg(cmd.pid, signal.SIGKILL), cmd.wait()))
            Path(t, "pid").write_text(f"{cmd.pid}\n")
            master, slave = pty.openpty()
            self.addCleanup(os.close, master)
            agent = subprocess.Popen(
                ["busybox", "sh", str(Path(__file__).resolve().parent / "testhost_agent.sh"),
                 os.ttyname(slave), "/", str(Path(t, "pid"))],
                env={"NONCE": "n1", "PATH": os.environ["PATH"]}, stdin=subprocess.DEVNULL)
            self.addCleanup(lambda: (agent.kill(), agent.wait()))
            os.close(slave)
            deadline = time.monotonic() + 20
            while b"ready" not in out.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the agent sets the pty to raw mode first
            os.write(master, b"@@testhost-dump-n1@@\n")
            answer = b""
            while b"@@testhost-dump-end-n1@@" not in answer and time.monotonic() < deadline:
                if select.select([master], [], [], 1)[0]:
                    answer += os.read(master, 65536)
            text = answer.decode(errors="replace")
            self.assertIn("@@testhost-dump-end-n1@@", text)
            sections = watchdog_test.dump_sections(text)
            tree = sections["process tree of the command (pid ppid state wchan command)"]
            self.assertRegex(tree, rf"^{cmd.pid} {os.getpid()} S \S+ \S*python3")
            self.assertRegex(tree, rf"\n\d+ {cmd.pid} S \S+ sleep 60")
            self.assertEqual(len(tree.splitlines()), 2)
            self.assertIn(f"kernel stack of pid {cmd.pid} thread {cmd.pid} (python3)", sections)
            self.assertIn(f"sent SIGUSR2 to pid {cmd.pid}"
                          " (its FLICK_DUMP_SIGNAL; its answer goes to the console)", sections)
            self.assertIn(f"thread stacks of pid {cmd.pid} (python3)", sections)
            self.assertIn("flick-dump: vcpu 0", out.read_text())


class WatchdogTestChecksTest(unittest.TestCase):
    GOOD = """flick-testguest: PASS
testhost: watchdog: no output for 20 s; collecting a dump, then killing QEMU
flick-dump: vm 1: vcpu 0 (running): rip 0x10054a
testhost: agent dump:
== process tree of the command (pid ppid state wchan command)
121 1 S 0 /b/flick vm run --kernel g.elf
== thread stacks of pid 121 (flick)
#0  0x00007f112ee37d6b ioctl
#1  0x00005609981fa0ee flick::vmm::KvmVcpu::run()
testhost: outer QEMU registers:
RIP=ffffffff81a592eb RFL=00000212 [----A--] CPL=0
testhost: watchdog: no output for 20 s; QEMU killed after 37.4 s
"""

    def test_a_complete_dump_passes(self):
        self.assertEqual(watchdog_test.problems(self.GOOD, 124, 40, 20, 180), [])

    def test_missing_parts_are_named(self):
        bad = self.GOOD.replace("flick-dump: vm 1: vcpu 0", "flick-dump: vm 1").replace(
            "ioctl", "read").replace("flick::vmm::KvmVcpu::run()", "main")
        found = watchdog_test.problems(bad, 1, 300, 20, 180)
        self.assertEqual(len(found), 4, found)
        self.assertIn("exit status 1, expected 124", found)


class BootReportTest(unittest.TestCase):
    REPORT = {"uptime": "2.31", "cpus": "1", "cmdline": "console=ttyS0 quiet t=1",
              "acpi": "APIC DSDT FACP", "flags": "fpu tsc x2apic tsc_deadline_timer aes",
              "clocksource": "kvm-clock", "done": ""}

    def result(self, **changes: str) -> guest_report.BootResult:
        return guest_report.BootResult(0, {**self.REPORT, **changes}, 5.0, 6.0, "")

    def test_a_good_boot_has_no_problems(self):
        self.assertEqual(self.result().problems(1, ["t=1"], ("tsc_deadline_timer",)), [])

    def test_a_missing_cpu_flag_is_a_problem(self):
        r = self.result(flags="fpu tsc x2apic aes")
        self.assertEqual(r.problems(1, ["t=1"]), [])
        found = r.problems(1, ["t=1"], ("tsc_deadline_timer",))
        self.assertEqual(len(found), 1)
        self.assertIn("tsc_deadline_timer", found[0])


class NeededTest(unittest.TestCase):
    def test_override(self):
        with mock.patch.dict(os.environ, {"FLICK_TESTHOST": "always"}):
            self.assertTrue(testhost.needed())
        with mock.patch.dict(os.environ, {"FLICK_TESTHOST": "never"}):
            self.assertFalse(testhost.needed())

    def test_pvm_needs_the_test_host(self):
        # placement_test.py covers every kind of machine; this checks that needed() asks it.
        with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"FLICK_TESTHOST": ""}):
            root = Path(d)
            (root / "dev").mkdir()
            (root / "dev/kvm").touch()
            (root / "sys/module/kvm_pvm").mkdir(parents=True)
            self.assertTrue(testhost.needed(root))
            (root / "proc").mkdir()
            (root / "proc/cpuinfo").write_text("flags\t: fpu svm\n")
            (root / "sys/module/kvm_pvm").rmdir()
            self.assertFalse(testhost.needed(root))


if __name__ == "__main__":
    unittest.main()
