#!/usr/bin/env python3
"""`flick image` against a real registry on loopback (Debian's docker-registry, filled with
skopeo from scripts/busybox-image.py's layout), through blob_proxy.py so blob downloads take
long enough to watch: the progress line on a terminal (a pty from script(1)) and nothing when
not one, --pull always|missing|never, ls and rm (and the machines that keep an image), and
login/logout against the same storage served over TLS with htpasswd auth and through
token_proxy.py.

  image_cli_test.py FLICK
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else "flick"
KERNEL = os.environ.get("FLICK_TEST_GUEST_KERNEL", "")  # lets the test create (never start) machines
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


USER = "flick"
PASSWORD = "Login-s3cret-pw-42"
WRONG_PASSWORD = "not-the-Login-pw-17"


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
        cls.start_auth_registries(port)

    @classmethod
    def start_auth_registries(cls, port: int) -> None:
        """The same storage served over TLS (a CA made here) with htpasswd auth, and through
        token_proxy.py, which asks for USER:PASSWORD on the token request."""
        tls = cls.dir / "tls"
        tls.mkdir()
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *argv: subprocess.run(argv, cwd=tls, check=True, capture_output=True)
        run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=flick-test-ca")
        (tls / "ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext", "-out", "server.crt")
        (tls / "htpasswd").write_bytes(run("htpasswd", "-Bbn", USER, PASSWORD).stdout)
        tls_port = free_port()
        (cls.dir / "registry-tls.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {cls.dir / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{tls_port}\n  tls:\n    certificate: {tls / 'server.crt'}\n"
            f"    key: {tls / 'server.key'}\nauth:\n  htpasswd:\n    realm: flick-test\n    path: {tls / 'htpasswd'}\n")
        cls.start(["docker-registry", "serve", str(cls.dir / "registry-tls.yml")])
        cls.tls_host = f"127.0.0.1:{tls_port}"
        (cls.dir / "certs.d" / cls.tls_host).mkdir(parents=True)
        shutil.copy(tls / "ca.crt", cls.dir / "certs.d" / cls.tls_host / "ca.crt")
        token = cls.start([sys.executable, str(HERE / "token_proxy.py"), str(port), str(cls.dir / "token.log"),
                           USER, PASSWORD, "unused-identity-token"], stdout=subprocess.PIPE)
        cls.token_host = "127.0.0.1:" + token.stdout.readline().decode().strip()
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", tls_port)).close()
                break
            except OSError:
                time.sleep(0.01)

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
                        FLICK_INSECURE_REGISTRIES=f"{self.host},{self.registry},{self.token_host},127.0.0.1:1")
        for v in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "FLICK_CERTS_DIR"):
            self.env.pop(v, None)
        self.outputs: list[str] = []  # everything flick printed, searched for the password

    def flick(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([FLICK, "image", *args], capture_output=True, text=True, env=self.env, timeout=120,
                           input=stdin, stdin=subprocess.DEVNULL if stdin is None else None)
        self.outputs += [p.stdout, p.stderr]
        return p

    def assert_no_secret_shown(self) -> None:
        seen = "".join(self.outputs) + (self.dir / "token.log").read_text()
        for secret in (PASSWORD, WRONG_PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
            self.assertNotIn(secret, seen)

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
        self.assertEqual(rows[0].split(), ["REFERENCE", "DIGEST", "SIZE", "ROOTFS", "MACHINES"])
        self.assertEqual(len(rows), 2, ls.stdout)
        self.assertRegex(rows[1], rf"^{re.escape(ref)} +{digest} +[\d.]+ (kB|MB) +0 +-$")

        rm = self.flick("rm", ref)
        self.assertEqual(rm.returncode, 0, rm.stderr)
        self.assertRegex(rm.stdout, rf"^removed {re.escape(ref)} \([\d.]+ (kB|MB) freed\)\n$")
        self.assertEqual(self.flick("ls").stdout.splitlines()[1:], [])
        self.assertEqual(list((self.home / "blobs" / "sha256").iterdir()), [])
        again = self.flick("rm", ref)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(again.stderr, f"flick image: no image {ref} in the image cache at {self.home}\n")

    def test_an_image_machines_use_is_kept(self):
        if not KERNEL:
            self.skipTest("needs FLICK_TEST_GUEST_KERNEL (the build's test guest) to create machines")
        self.env.update(FLICK_KERNEL=KERNEL, FLICK_STATE_DIR=str(self.home / "state"))
        ref, same = self.ref("plain"), f"{self.registry}/busybox:1"
        pulled = self.flick("pull", ref)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)
        digest = pulled.stdout.split()[1]

        def machine(*args: str) -> subprocess.CompletedProcess:
            p = subprocess.run([FLICK, "machine", *args], capture_output=True, text=True, env=self.env, timeout=120,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p

        for name in ("web", "worker"):
            machine("create", ref, "--no-network", "--name", name)
        ls = self.flick("ls")
        self.assertEqual(ls.returncode, 0, ls.stderr)
        self.assertRegex(ls.stdout.splitlines()[1], rf"^{re.escape(ref)} +{digest} +\S+ \S+ +1 +web, worker$")

        refused = self.flick("rm", ref)
        self.assertEqual(refused.returncode, 1)
        self.assertEqual(refused.stderr, f"flick image: {ref} is used by machines web, worker (not destroyed): "
                                         "destroy them first, or rm --force\n")
        self.assertIn(digest, self.flick("ls").stdout)

        # A second name for the same image: either may go, as long as one stays.
        self.assertEqual(self.flick("pull", same).returncode, 0)
        self.assertEqual(self.flick("rm", same).returncode, 0)
        self.assertEqual(self.flick("pull", same).returncode, 0)
        self.assertEqual(self.flick("rm", ref).returncode, 0)
        refused = self.flick("rm", same)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("is used by machines web, worker", refused.stderr)

        machine("destroy", "web")
        refused = self.flick("rm", same)
        self.assertEqual(refused.stderr, f"flick image: {same} is used by machine worker (not destroyed): "
                                         "destroy it first, or rm --force\n")
        self.assertRegex(self.flick("ls").stdout.splitlines()[1], r" worker$")
        forced = self.flick("rm", "--force", same)
        self.assertEqual(forced.returncode, 0, forced.stderr)
        self.assertEqual(self.flick("ls").stdout.splitlines()[1:], [])

    def test_a_machines_pull_policy_is_kept_and_used_at_create_and_update(self):
        if not KERNEL:
            self.skipTest("needs FLICK_TEST_GUEST_KERNEL (the build's test guest) to create machines")
        self.env.update(FLICK_KERNEL=KERNEL, FLICK_STATE_DIR=str(self.home / "state"))
        ref = self.ref("plain")

        def manifest_gets() -> int:
            return (self.dir / "proxy.log").read_text().count(" /v2/plain/busybox/manifests/1 ")

        def machine(*args: str, code: int = 0) -> subprocess.CompletedProcess:
            p = subprocess.run([FLICK, "machine", *args], capture_output=True, text=True, env=self.env, timeout=120,
                               stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, code, p.stderr)
            return p

        def pull_of(name: str):
            return json.loads(machine("status", name, "--json").stdout)["config"].get("pull")

        # never: not in the cache, so nothing is made.
        refused = machine("create", ref, "--no-network", "--name", "cached-only", "--pull", "never", code=1)
        self.assertIn("the pull policy is never", refused.stderr)
        self.assertEqual(json.loads(machine("list", "--json").stdout), [])
        before = manifest_gets()
        machine("create", ref, "--no-network", "--name", "usual")  # missing: fetched once
        self.assertEqual((manifest_gets(), pull_of("usual")), (before + 1, None))
        machine("create", ref, "--no-network", "--name", "fresh", "--pull", "always")
        self.assertEqual((manifest_gets(), pull_of("fresh")), (before + 2, "always"))
        # An update resolves the image again only for the machine that asks to.
        machine("update", "usual", "--env", "A=1", "--skip-start")
        self.assertEqual(manifest_gets(), before + 2)
        machine("update", "fresh", "--env", "A=1", "--skip-start")
        self.assertEqual(manifest_gets(), before + 3)
        machine("update", "fresh", "--pull", "missing", "--skip-start")
        self.assertEqual((manifest_gets(), pull_of("fresh")), (before + 3, None))
        machine("update", "usual", "--pull", "never", "--skip-start")
        self.assertEqual((manifest_gets(), pull_of("usual")), (before + 3, "never"))

    def test_login_checks_and_saves_the_credentials_and_logout_removes_them(self):
        self.env["FLICK_CERTS_DIR"] = str(self.dir / "certs.d")
        auth = self.home / "auth.json"
        self.env["REGISTRY_AUTH_FILE"] = str(auth)
        others = {"auths": {"other.example": {"auth": base64.b64encode(b"someone:else").decode()}},
                  "credHelpers": {"helped.example": "pass"}, "credsStore": "", "HttpHeaders": {"X-A": "b"}}
        auth.write_text(json.dumps(others))
        auth.chmod(0o644)
        ref = f"{self.tls_host}/busybox:1"
        anonymous = self.flick("pull", ref)
        self.assertEqual(anonymous.returncode, 1)
        self.assertIn(f"no credentials found for {self.tls_host} in {auth}", anonymous.stderr)

        wrong = self.flick("login", "--username", USER, "--password-stdin", self.tls_host, stdin=WRONG_PASSWORD + "\n")
        self.assertEqual(wrong.returncode, 1)
        self.assertRegex(wrong.stderr, rf"^flick image: .*logging in to {re.escape(self.tls_host)}.*401.*refused")
        self.assertEqual(json.loads(auth.read_text()), others)  # nothing written
        self.assertEqual(stat.S_IMODE(auth.stat().st_mode), 0o644)

        login = self.flick("login", "-u", USER, "--password-stdin", self.tls_host, stdin=PASSWORD + "\n")
        self.assertEqual(login.returncode, 0, login.stderr)
        self.assertEqual(login.stdout, f"Login Succeeded: {self.tls_host} as {USER}, saved in {auth}\n")
        self.assertEqual(login.stderr, "")
        self.assertEqual(stat.S_IMODE(auth.stat().st_mode), 0o600)
        saved = json.loads(auth.read_text())
        self.assertEqual(saved["auths"].pop(self.tls_host), {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        self.assertEqual(saved, others)
        self.assertEqual([p.name for p in self.home.iterdir() if p.name.startswith(".auth.json")], [])  # no temp left
        pulled = self.flick("pull", ref)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)

        logout = self.flick("logout", self.tls_host)
        self.assertEqual(logout.returncode, 0, logout.stderr)
        self.assertEqual(logout.stdout, f"Removed login credentials for {self.tls_host} from {auth}\n")
        self.assertEqual(json.loads(auth.read_text()), others)
        again = self.flick("logout", self.tls_host)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(again.stderr, f"flick image: not logged in to {self.tls_host} (no entry in {auth})\n")
        self.assertEqual(self.flick("pull", ref).returncode, 1)
        self.assert_no_secret_shown()

    # A docker-credential-helpers helper keeping each server's JSON in a file beside it.
    HELPER = """#!/usr/bin/python3
import hashlib, json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
verb, data = sys.argv[1], sys.stdin.read()
with open(here / "calls", "a") as log:
    log.write(verb + "\\n")
if "broken" in pathlib.Path(__file__).name:
    print("keyring is locked")
    sys.exit(1)
server = json.loads(data)["ServerURL"] if verb == "store" else data.strip()
entry = here / "store" / hashlib.sha256(server.encode()).hexdigest()
if verb == "store":
    entry.parent.mkdir(exist_ok=True)
    entry.write_text(data)
elif not entry.exists():
    print("credentials not found in native keychain")
    sys.exit(1)
elif verb == "get":
    print(entry.read_text())
else:
    entry.unlink()
"""

    def test_login_and_logout_through_a_credential_helper(self):
        self.env["FLICK_CERTS_DIR"] = str(self.dir / "certs.d")
        auth = self.home / "auth.json"
        self.env["REGISTRY_AUTH_FILE"] = str(auth)
        bin_dir = self.home / "bin"
        bin_dir.mkdir()
        for name in ("flicktest", "flickbroken"):
            (bin_dir / f"docker-credential-{name}").write_text(self.HELPER)
            (bin_dir / f"docker-credential-{name}").chmod(0o755)
        self.env["PATH"] = f"{bin_dir}:{self.env['PATH']}"
        calls = bin_dir / "calls"
        ref = f"{self.tls_host}/busybox:1"
        stale = base64.b64encode(b"stale:wrong").decode()
        auth.write_text(json.dumps({"auths": {self.tls_host: {"auth": stale}}, "credsStore": "flicktest"}))

        # credsStore holds the secret; the file's entry for the registry, which would shadow it, goes.
        login = self.flick("login", "-u", USER, "--password-stdin", self.tls_host, stdin=PASSWORD + "\n")
        self.assertEqual(login.returncode, 0, login.stderr)
        helper = f"docker-credential-flicktest (credsStore of {auth})"
        self.assertEqual(login.stdout, f"Login Succeeded: {self.tls_host} as {USER}, saved in {helper}\n")
        self.assertEqual(json.loads(auth.read_text()), {"auths": {}, "credsStore": "flicktest"})
        [entry] = (bin_dir / "store").iterdir()
        self.assertEqual(json.loads(entry.read_text()),
                         {"ServerURL": self.tls_host, "Username": USER, "Secret": PASSWORD})
        pulled = self.flick("pull", ref)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)
        self.assertEqual(calls.read_text().split(), ["store", "get"])

        logout = self.flick("logout", self.tls_host)
        self.assertEqual(logout.returncode, 0, logout.stderr)
        self.assertEqual(logout.stdout, f"Removed login credentials for {self.tls_host} from {helper}\n")
        self.assertEqual(list((bin_dir / "store").iterdir()), [])
        again = self.flick("logout", self.tls_host)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(again.stderr, f"flick image: not logged in to {self.tls_host} (no entry in {auth} nor in {helper})\n")
        self.assertEqual(self.flick("pull", ref).returncode, 1)

        # The registry's credHelpers entry comes before credsStore, as in Docker.
        auth.write_text(json.dumps({"credHelpers": {self.tls_host: "flicktest"}, "credsStore": "flickbroken"}))
        login = self.flick("login", "-u", USER, "--password-stdin", self.tls_host, stdin=PASSWORD)
        self.assertEqual(login.returncode, 0, login.stderr)
        self.assertIn(f"saved in docker-credential-flicktest (credHelpers of {auth})", login.stdout)

        # A helper that cannot store: an error naming it, and nothing written to the file.
        auth.write_text(json.dumps({"auths": {}, "credsStore": "flickbroken"}))
        broken = self.flick("login", "-u", USER, "--password-stdin", self.tls_host, stdin=PASSWORD)
        self.assertEqual(broken.returncode, 1)
        self.assertIn("docker-credential-flickbroken store failed: keyring is locked", broken.stderr)
        self.assertEqual(json.loads(auth.read_text()), {"auths": {}, "credsStore": "flickbroken"})
        self.assert_no_secret_shown()

    def test_login_through_a_token_server_and_where_the_login_goes(self):
        # Neither $REGISTRY_AUTH_FILE nor $XDG_RUNTIME_DIR: ~/.docker/config.json, made with its folder.
        docker_config = self.home / ".docker" / "config.json"
        wrong = self.flick("login", "-u", USER, "--password-stdin", self.token_host, stdin=WRONG_PASSWORD)
        self.assertEqual(wrong.returncode, 1)
        self.assertIn(f"logging in to {self.token_host}", wrong.stderr)
        self.assertIn("HTTP 401", wrong.stderr)
        self.assertFalse(docker_config.exists())
        login = self.flick("login", "-u", USER, "--password-stdin", self.token_host, stdin=PASSWORD)
        self.assertEqual(login.returncode, 0, login.stderr)
        self.assertEqual(stat.S_IMODE(docker_config.stat().st_mode), 0o600)
        self.assertIn(self.token_host, json.loads(docker_config.read_text())["auths"])
        private = self.flick("pull", f"{self.token_host}/private/busybox:1")
        self.assertEqual(private.returncode, 0, private.stderr)

        # $XDG_RUNTIME_DIR/containers/auth.json comes before it; the password on the command
        # line works, with Docker's warning.
        self.env["XDG_RUNTIME_DIR"] = str(self.home / "run")
        argv = self.flick("login", "-u", USER, "--password", PASSWORD, self.token_host)
        self.assertEqual(argv.returncode, 0, argv.stderr)
        self.assertEqual(argv.stderr, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        runtime_auth = self.home / "run" / "containers" / "auth.json"
        self.assertEqual(stat.S_IMODE(runtime_auth.stat().st_mode), 0o600)
        self.assertIn(self.token_host, json.loads(runtime_auth.read_text())["auths"])

        # No password and stdin not a terminal: a usage error, not a hang.
        none = self.flick("login", "-u", USER, self.token_host)
        self.assertEqual(none.returncode, 2)
        self.assertIn("--password-stdin", none.stderr)
        self.assert_no_secret_shown()

    def test_login_asks_for_the_password_on_a_terminal_without_echo(self):
        self.env["FLICK_CERTS_DIR"] = str(self.dir / "certs.d")
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(FLICK, [FLICK, "image", "login", "-u", USER, self.tls_host], self.env)
        out = b""

        def read_until(text: bytes) -> None:
            nonlocal out
            deadline = time.monotonic() + 60
            while text not in out and time.monotonic() < deadline:
                if select.select([fd], [], [], 1)[0]:
                    try:
                        out += os.read(fd, 4096)
                    except OSError:
                        return

        read_until(b"Password: ")
        os.write(fd, PASSWORD.encode() + b"\n")
        read_until(b"Login Succeeded")
        read_until(b"\n" + b"x" * 100)  # to the end
        os.close(fd)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertIn(b"Login Succeeded", out)
        self.assertNotIn(PASSWORD.encode(), out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
