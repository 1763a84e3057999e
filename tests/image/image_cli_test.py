#!/usr/bin/env python3
"""`flick image` against a real registry on loopback (Debian's docker-registry, filled with
skopeo from scripts/busybox-image.py's layout), through blob_proxy.py so blob downloads take
long enough to watch: the progress line on a terminal (a pty from script(1)) and nothing when
not one, --pull always|missing|never, ls and rm.

  image_cli_test.py FLICK
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else "flick"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ImageCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = Path(tempfile.mkdtemp(prefix="flick-image-cli-"))
        cls.children: list[subprocess.Popen] = []
        cls.children_log = open(cls.dir / "children.log", "ab")
        layout = subprocess.run([sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(cls.dir / "layout")],
                                check=True, capture_output=True, text=True).stdout.strip()
        port = free_port()
        (cls.dir / "registry.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {cls.dir / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
        cls.start(["docker-registry", "serve", str(cls.dir / "registry.yml")])
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.01)
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", layout, f"docker://127.0.0.1:{port}/busybox:1"],
                       check=True)
        proxy = cls.start([sys.executable, str(HERE / "blob_proxy.py"), str(port), str(cls.dir / "proxy.log"), "100"],
                          stdout=subprocess.PIPE)
        cls.host = "127.0.0.1:" + proxy.stdout.readline().decode().strip()
        cls.registry = f"127.0.0.1:{port}"

    @classmethod
    def start(cls, argv: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=stdout, stderr=cls.children_log)
        cls.children.append(p)
        return p

    @classmethod
    def tearDownClass(cls) -> None:
        for p in cls.children:
            p.terminate()
            p.wait()
            if p.stdout:
                p.stdout.close()
        cls.children_log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="store-", dir=self.dir))
        self.env = dict(os.environ, FLICK_HOME=str(self.home), HOME=str(self.home),
                        FLICK_INSECURE_REGISTRIES=f"{self.host},{self.registry},127.0.0.1:1")
        for v in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "FLICK_CERTS_DIR"):
            self.env.pop(v, None)

    def flick(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([FLICK, "image", *args], capture_output=True, text=True, env=self.env, timeout=120,
                              stdin=subprocess.DEVNULL)

    def ref(self, mode: str) -> str:
        return f"{self.host}/{mode}/busybox:1"

    def test_progress_line_on_a_terminal_only(self):
        command = shlex.join([FLICK, "image", "pull", self.ref("slow")])
        p = subprocess.run(["script", "-qefc", command, "/dev/null"], capture_output=True, env=self.env, timeout=120,
                           stdin=subprocess.DEVNULL)
        out = p.stdout.decode()  # not text=True: that would turn the "\r"s into newlines
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        updates = [u for u in re.findall(r"\r\x1b\[K([^\r\n]+)", out) if not u.startswith(self.ref("slow"))]
        self.assertGreaterEqual(len(updates), 2, repr(out))  # the blob is held back 0.4 s: several updates
        line = re.compile(r"^[\d.]+ [kMG]?B / ([\d.]+ [kMG]?B), (\d)/1 layers, [\d.]+ [kMG]?B/s, ETA (--|\d+s)$")
        for u in updates:
            self.assertRegex(u, line)
        self.assertTrue(updates[0].startswith("0 B / "), updates)
        self.assertRegex(updates[-1], r"1/1 layers, .* ETA 0s$")
        # The line is wiped before the result, which stands alone.
        self.assertRegex(out, r"\r\x1b\[K" + re.escape(self.ref("slow")) + r" sha256:[0-9a-f]{64} \(\d+ bytes\)\r?\n$")

        # Not a terminal: the result line and nothing else.
        p = self.flick("pull", "--pull", "always", self.ref("slow"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.assertRegex(p.stdout, r"^\S+ sha256:[0-9a-f]{64} \(\d+ bytes\)\n$")

    def test_pull_policies(self):
        ref = self.ref("plain")
        never = self.flick("pull", "--pull", "never", ref)
        self.assertEqual(never.returncode, 1)
        self.assertRegex(never.stderr, r"^flick image: .*the pull policy is never.*" + re.escape(ref) +
                         " is not in the image cache at " + re.escape(str(self.home)))
        bad = self.flick("pull", "--pull", "sometimes", ref)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--pull takes always, missing or never, not 'sometimes'", bad.stderr)

        def manifest_gets() -> int:
            return (self.dir / "proxy.log").read_text().count(" /v2/plain/busybox/manifests/1 ")

        before = manifest_gets()
        self.assertEqual(self.flick("pull", ref).returncode, 0)  # `image pull` asks by default
        self.assertEqual(self.flick("pull", ref).returncode, 0)
        self.assertEqual(manifest_gets(), before + 2)
        for policy in ("missing", "never"):
            p = self.flick("pull", "--pull", policy, ref)
            self.assertEqual(p.returncode, 0, p.stderr)
        rootfs = self.flick("rootfs", ref, "-o", str(self.home / "root.ext4"))  # `rootfs` uses the cache by default
        self.assertEqual(rootfs.returncode, 0, rootfs.stderr)
        self.assertEqual(manifest_gets(), before + 2)

    def test_a_mirror_that_is_down_is_passed_over(self):
        ref = f"{self.registry}/busybox:1"
        self.env["FLICK_REGISTRY_MIRRORS"] = f"{self.registry}=127.0.0.1:1"
        p = self.flick("pull", ref)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("from mirror 127.0.0.1:1 failed, trying the next", p.stderr)
        del self.env["FLICK_REGISTRY_MIRRORS"]
        p = self.flick("--registry-mirror", f"{self.registry}=127.0.0.1:1", "pull", ref)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("from mirror 127.0.0.1:1 failed, trying the next", p.stderr)
        p = self.flick("pull", ref)
        self.assertEqual((p.returncode, p.stderr), (0, ""))

    def test_ls_and_rm(self):
        ref = self.ref("plain")
        pulled = self.flick("pull", ref)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)
        digest = pulled.stdout.split()[1]
        ls = self.flick("ls")
        self.assertEqual(ls.returncode, 0, ls.stderr)
        rows = ls.stdout.splitlines()
        self.assertEqual(rows[0].split(), ["REFERENCE", "DIGEST", "SIZE", "ROOTFS"])
        self.assertEqual(len(rows), 2, ls.stdout)
        self.assertRegex(rows[1], rf"^{re.escape(ref)} +{digest} +[\d.]+ (kB|MB) +0$")

        rm = self.flick("rm", ref)
        self.assertEqual(rm.returncode, 0, rm.stderr)
        self.assertRegex(rm.stdout, rf"^removed {re.escape(ref)} \([\d.]+ (kB|MB) freed\)\n$")
        self.assertEqual(self.flick("ls").stdout.splitlines()[1:], [])
        self.assertEqual(list((self.home / "blobs" / "sha256").iterdir()), [])
        again = self.flick("rm", ref)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(again.stderr, f"flick image: no image {ref} in the image cache at {self.home}\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
