#!/usr/bin/env python3
"""scripts/busybox-image.py: deterministic output, checked by tools that did not write it
(skopeo, umoci, and flick's own ext4 builder plus e2fsck/debugfs when the CLI is given).

  busybox_image_test.py [FLICK]
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "busybox-image.py"
FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else None
ARGS = ["--env", "GREETING=hello world", "--workdir", "/srv", "--user", "app",
        "--cmd", '["sh", "-c", "echo hi"]', "--entrypoint", '["/bin/env"]', "--label", "k=v"]


def make(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def run(*argv: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def index(layout: Path) -> dict[str, str]:
    """tag -> manifest digest."""
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in manifests}


def layer_members(layout: Path, tag: str) -> dict[str, tarfile.TarInfo]:
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index(layout)[tag].split(":")[1]).read_bytes())
    layer = (blobs / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return {m.name: m for m in tar.getmembers()}


class BusyboxImageTest(unittest.TestCase):
    """One layout built once; tests that change a layout work on a copy."""

    @classmethod
    def setUpClass(cls):
        cls.shared = tempfile.TemporaryDirectory(prefix="busybox-image-")
        cls.layout = Path(cls.shared.name) / "layout"
        p = make(cls.layout, *ARGS)
        if p.returncode != 0 or p.stdout.strip() != f"oci:{cls.layout}:latest":
            raise AssertionError(f"building {cls.layout}: {p.stdout}{p.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.shared.cleanup()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="busybox-image-")
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_same_inputs_give_same_digests(self):
        again = self.dir / "again"
        self.assertEqual(make(again, *ARGS).returncode, 0)
        self.assertEqual(index(again), index(self.layout))
        self.assertEqual((again / "index.json").read_bytes(),
                         (self.layout / "index.json").read_bytes())
        other = self.dir / "other"
        self.assertEqual(make(other, *ARGS, env={"SOURCE_DATE_EPOCH": "86400"}).returncode, 0)
        self.assertNotEqual(index(other), index(self.layout))

    def test_skopeo_reads_config(self):
        ref = f"oci:{self.layout}:latest"
        config = json.loads(run("skopeo", "inspect", "--config", ref))
        self.assertEqual(config["architecture"], "amd64")
        self.assertEqual(config["os"], "linux")
        self.assertEqual(config["created"], "1970-01-01T00:00:00Z")
        c = config["config"]
        self.assertEqual(c["Env"], ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                    "GREETING=hello world"])
        self.assertEqual(c["Cmd"], ["sh", "-c", "echo hi"])
        self.assertEqual(c["Entrypoint"], ["/bin/env"])
        self.assertEqual((c["WorkingDir"], c["User"], c["Labels"]), ("/srv", "app", {"k": "v"}))
        inspect = json.loads(run("skopeo", "inspect", ref))
        self.assertEqual(inspect["Digest"], index(self.layout)["latest"])
        self.assertEqual(len(inspect["Layers"]), 1)

    def test_umoci_unpacks_a_working_tree(self):
        bundle = self.dir / "bundle"
        run("umoci", "unpack", "--rootless", "--image", f"{self.layout}:latest", str(bundle))
        rootfs = bundle / "rootfs"
        self.assertEqual(os.readlink(rootfs / "bin/sh"), "busybox")
        self.assertEqual(os.readlink(rootfs / "usr/bin/env"), "../../bin/busybox")
        self.assertEqual(oct(os.lstat(rootfs / "tmp").st_mode & 0o7777), oct(0o1777))
        self.assertEqual(oct(os.lstat(rootfs / "root").st_mode & 0o7777), oct(0o700))
        self.assertEqual(run(str(rootfs / "bin/sh"), "-c", "echo $((6 * 7))").strip(), "42")
        # umoci resolves User through the image's /etc/passwd, and HOME with it.
        process = json.loads((bundle / "config.json").read_text())["process"]
        self.assertEqual(process["user"], {"uid": 1000, "gid": 1000})
        self.assertIn("HOME=/home/app", process["env"])
        self.assertEqual(process["cwd"], "/srv")
        group = (rootfs / "etc/group").read_text().splitlines()
        self.assertIn("users:x:100:app", group)
        self.assertIn("nogroup:x:65534:", group)

    def test_layer_owners_and_order(self):
        # umoci --rootless squashes owners, so they are read from the tar itself.
        members = layer_members(self.layout, "latest")
        names = list(members)
        self.assertEqual(names, sorted(names))
        self.assertEqual((members["home/app"].uid, members["home/app"].gid), (1000, 1000))
        self.assertTrue(members["bin/busybox"].isreg())
        self.assertEqual(members["bin/busybox"].mode, 0o755)
        self.assertTrue(all(m.uid == 0 for n, m in members.items() if n != "home/app"))
        self.assertTrue(all(m.mtime == 0 for m in members.values()))
        applets = run(os.environ.get("FLICK_BUSYBOX", "/bin/busybox"), "--list-full").split()
        self.assertTrue(all(a in members for a in applets))

    def test_second_tag_shares_the_layout(self):
        self.layout = self.dir / "layout"
        shutil.copytree(type(self).layout, self.layout)
        p = make(self.layout, "--tag", "v2", "--cmd", '["true"]')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), f"oci:{self.layout}:v2")
        first = index(self.layout)["latest"]
        self.assertEqual(set(index(self.layout)), {"latest", "v2"})
        for tag, cmd in (("latest", ["sh", "-c", "echo hi"]), ("v2", ["true"])):
            config = json.loads(run("skopeo", "inspect", "--config", f"oci:{self.layout}:{tag}"))
            self.assertEqual(config["config"]["Cmd"], cmd)
        # Rebuilding a tag replaces its manifest rather than adding a second one.
        self.assertEqual(make(self.layout, "--tag", "latest").returncode, 0)
        manifests = json.loads((self.layout / "index.json").read_text())["manifests"]
        self.assertEqual(len(manifests), 2)
        self.assertNotEqual(index(self.layout)["latest"], first)

    def test_errors_are_one_line(self):
        cases = [
            ([], {"FLICK_BUSYBOX": str(self.dir / "missing")}, "install busybox-static"),
            (["--cmd", "sh"], {}, "--cmd"),
            (["--env", "NOEQUALS"], {}, "K=V"),
            (["--workdir", "relative"], {}, "absolute"),
            (["--tag", "bad tag"], {}, "bad tag"),
        ]
        for args, env, needle in cases:
            p = make(self.dir / "fresh", *args, env=env)
            self.assertEqual(p.returncode, 1, args)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertIn(needle, p.stderr)
            self.assertFalse((self.dir / "fresh").exists())
        (self.dir / "notalayout").mkdir()
        (self.dir / "notalayout" / "file").write_text("x")
        p = make(self.dir / "notalayout")
        self.assertEqual(p.returncode, 1)
        self.assertIn("nor an OCI image layout", p.stderr)

    @unittest.skipUnless(FLICK, "no flick CLI given")
    def test_flick_builds_a_clean_ext4(self):
        ext4 = self.dir / "rootfs.ext4"
        env = {**os.environ, "FLICK_HOME": str(self.dir / "home")}
        p = subprocess.run([FLICK, "image", "--store", str(self.dir / "store"), "rootfs",
                            f"oci:{self.layout}:latest", "-o", str(ext4)],
                           capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        run("e2fsck", "-fn", str(ext4))

        def stat(path: str) -> str:
            return run("debugfs", "-R", f"stat {path}", str(ext4))

        self.assertIn("Type: regular", stat("/bin/busybox"))
        self.assertIn("Type: symlink", stat("/bin/sh"))
        self.assertRegex(stat("/home/app"), r"User:\s+1000\s+Group:\s+1000")
        self.assertRegex(stat("/tmp"), r"Mode:\s+01777")


if __name__ == "__main__":
    unittest.main(verbosity=2)
