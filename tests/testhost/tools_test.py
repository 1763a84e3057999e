#!/usr/bin/env python3
"""Unit tests of the test host tooling that need neither QEMU nor a downloaded kernel."""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extract_vmlinux  # noqa: E402
import guest_initramfs  # noqa: E402
import testhost  # noqa: E402


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

    def test_spoofed_marker_with_another_nonce_is_output(self):
        out = io.BytesIO()
        f = testhost._ConsoleFilter("n1", out)
        f.feed(b"@@testhost-start-n1@@\n@@testhost-end-xx@@\n")
        self.assertEqual(out.getvalue(), b"@@testhost-end-xx@@\n")
        self.assertEqual(f.state, "command")


class NeededTest(unittest.TestCase):
    def test_override(self):
        with mock.patch.dict(os.environ, {"FLICK_TESTHOST": "always"}):
            self.assertTrue(testhost.needed())
        with mock.patch.dict(os.environ, {"FLICK_TESTHOST": "never"}):
            self.assertFalse(testhost.needed())

    def test_pvm_needs_the_test_host(self):
        if not Path("/sys/module/kvm_pvm").exists():
            self.skipTest("not a PVM machine")
        with mock.patch.dict(os.environ, {"FLICK_TESTHOST": ""}):
            self.assertTrue(testhost.needed())


if __name__ == "__main__":
    unittest.main()
