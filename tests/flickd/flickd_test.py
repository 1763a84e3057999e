#!/usr/bin/env python3
"""flickd, the real daemon, driven with plain HTTP (http.client, over its Unix socket and
loopback TCP): auth, apps, machines that are created but never started (the test guest is
their kernel: creating needs no KVM), get/list/filters, update, metadata, cordon, leases and
the nonce header, Fly's error shapes, bounded bodies, and waits that hold no worker. The
`flick` CLI, one more client of the same store, sees what flickd made; and `flick --api`
works through flickd, printing what the same commands print over the store.

flickd's OpenAPI description (tools/flickd/openapi.json, served at /openapi.json) is checked
against the server: it documents exactly the routes `flickd --routes` lists, each documented
route is served and each other method refused, and every response any test here receives
through call() validates against the schema documented for its path, method and status
(python3-jsonschema).

  flickd_test.py FLICKD FLICK      (FLICK_TEST_GUEST_KERNEL: the build's test guest)
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import jsonschema

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openapi_check  # noqa: E402
from openapi_check import SPEC, SPEC_FILE, json_schema, spec_operation, spec_ref  # noqa: E402

FLICKD = sys.argv.pop(1) if len(sys.argv) > 1 else "flickd"
FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else "flick"
KERNEL = os.environ.get("FLICK_TEST_GUEST_KERNEL", "")
TOKEN = "test-token-0123456789"
WORKERS = 2
MAX_BODY = 65536
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


class Daemon:
    """A flickd on a Unix socket and 127.0.0.1:<any port>, in its own directory."""

    def __init__(self, root: Path, token: str | None, *args: str):
        self.root = root
        self.state = root / "state"
        self.socket = str(root / "api.sock")
        self.env = dict(os.environ, FLICK_HOME=str(root / "cache"), XDG_RUNTIME_DIR=str(root / "run"),
                        FLICK_KVM_DEVICE="/nonexistent/kvm", FLICK_STATE_DIR=str(self.state))
        self.env.pop("FLICK_API_TOKEN", None)
        if token:
            self.env["FLICK_API_TOKEN"] = token
        if KERNEL:
            self.env["FLICK_KERNEL"] = KERNEL
        self.proc = subprocess.Popen([FLICKD, "--state-dir", str(self.state), "--socket", self.socket, "--listen",
                                      "127.0.0.1:0", "--no-network", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        m = re.match(r"flickd: serving unix:(\S+) http://127\.0\.0\.1:(\d+)$", line.strip())
        if not m:
            self.proc.kill()
            raise RuntimeError(f"flickd did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(m.group(2))

    def stop(self) -> tuple[int, str]:
        """SIGTERM; (exit status, what it wrote on stderr). Killed if it does not exit."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err

    def unix(self, timeout: float = 30) -> UnixConnection:
        return UnixConnection(self.socket, timeout)

    def tcp(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


# Every response call() receives, (method, path with query, status, content type, body bytes),
# until FlickdTest.tearDown checks them against the OpenAPI document.
RECEIVED: list[tuple[str, str, int, str, bytes]] = []
RECEIVED_LOCK = threading.Lock()
CHECKED = {"responses": 0, "operations": set()}


def call(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers: dict | None = None,
         raw: bytes | None = None):
    """(status, decoded JSON or None, response headers)."""
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    text = r.read()
    with RECEIVED_LOCK:
        RECEIVED.append((method, path, r.status, r.getheader("Content-Type", ""), text))
    return r.status, (json.loads(text) if text else None), dict(r.getheaders())


def response_problems(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    return openapi_check.response_problems(method, path, status, content_type, body, CHECKED["operations"])


def check_received() -> list[str]:
    """Checks and forgets every response received so far."""
    with RECEIVED_LOCK:
        received = list(RECEIVED)
        RECEIVED.clear()
        CHECKED["responses"] += len(received)
    return [p for r in received for p in response_problems(*r)]


def tearDownModule() -> None:
    problems = check_received()
    if problems:
        raise AssertionError("responses that do not validate against openapi.json:\n" + "\n".join(problems))
    # Proof that the check above saw the suite's traffic (a wrapper bypassed would check nothing).
    if CHECKED["responses"] < 50 or len(CHECKED["operations"]) < 10:
        raise AssertionError(f"only {CHECKED['responses']} responses of {len(CHECKED['operations'])} operations checked")
    print(f"\n{CHECKED['responses']} responses of {len(CHECKED['operations'])} documented operations "
          "validated against openapi.json", file=sys.stderr)


class FlickdTest(unittest.TestCase):
    daemon: Daemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = Path(tempfile.mkdtemp(prefix="flickd-test-"))
        cls.daemon = Daemon(cls.dir, TOKEN, "--workers", str(WORKERS), "--max-body", str(MAX_BODY))
        cls.image = ""
        if KERNEL:
            root = Path(__file__).resolve().parents[2]
            cls.image = subprocess.run([sys.executable, str(root / "scripts" / "busybox-image.py"),
                                        str(cls.dir / "layout")], check=True, capture_output=True,
                                       text=True).stdout.strip()

    @classmethod
    def tearDownClass(cls) -> None:
        status, err = cls.daemon.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        # Stopping answers what is pending and exits cleanly, having complained of nothing.
        if (status, err) != (0, ""):
            raise AssertionError(f"flickd stopped with {status}: {err}")

    def setUp(self) -> None:
        self.conn = self.daemon.unix()

    def tearDown(self) -> None:
        self.conn.close()
        problems = check_received()
        self.assertEqual(problems, [], "responses that do not validate against openapi.json")

    def api(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
        status, out, _ = call(self.conn, method, "/v1" + path, body, headers, raw)
        return status, out

    def ok(self, method: str, path: str, body=None, want: int = 200, headers: dict | None = None):
        status, out = self.api(method, path, body, headers)
        self.assertEqual(status, want, f"{method} {path}: {out}")
        return out

    def error(self, method: str, path: str, body=None, want: int = 400, headers: dict | None = None,
              raw: bytes | None = None) -> str:
        status, out = self.api(method, path, body, headers, raw)
        self.assertEqual(status, want, f"{method} {path}: {out}")
        self.assertIsInstance(out.get("error"), str, out)
        return out["error"]

    def app(self, name: str) -> str:
        self.ok("POST", "/apps", {"app_name": name, "org_slug": "personal"}, want=201)
        return name

    def needs_kernel(self) -> None:
        if not KERNEL:
            self.skipTest("needs FLICK_TEST_GUEST_KERNEL (the build's test guest)")

    def config(self, **extra) -> dict:
        return {"image": self.image, "guest": {"cpus": 1, "memory_mb": 128}, **extra}

    def create(self, app: str, name: str = "", **config) -> dict:
        body = {"config": self.config(**config), "skip_launch": True, "region": "local"}
        if name:
            body["name"] = name
        return self.ok("POST", f"/apps/{app}/machines", body)


class Auth(FlickdTest):
    def test_tcp_needs_the_token(self):
        tcp = self.daemon.tcp()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                        {"Authorization": TOKEN}):
            status, out, _ = call(tcp, "GET", "/v1/apps", headers=headers)
            self.assertEqual(status, 401, headers)
            self.assertTrue(out["error"].startswith("unauthorized: "), out)
        for headers in ({"Authorization": "Bearer " + TOKEN}, {"Authorization": "FlyV1 " + TOKEN},
                        {"Authorization": "FlyV1 fm2_other," + TOKEN}):
            status, out, h = call(tcp, "GET", "/v1/apps", headers=headers)
            self.assertEqual(status, 200, (headers, out))
            self.assertIn("fly-request-id", {k.lower() for k in h})
        tcp.close()

    def test_unix_socket_checks_a_token_only_if_sent(self):
        self.assertEqual(self.api("GET", "/apps")[0], 200)
        self.assertEqual(self.api("GET", "/apps", headers={"Authorization": "Bearer " + TOKEN})[0], 200)
        self.assertEqual(self.error("GET", "/apps", headers={"Authorization": "Bearer nope"}, want=401),
                         "unauthorized: the token is not valid")
        mode = stat.S_IMODE(os.stat(self.daemon.socket).st_mode)
        self.assertEqual(mode, 0o660)

    def test_token_generated_on_first_start(self):
        d = Daemon(self.dir / "second", None)
        try:
            path = d.state / "api-token"
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
            token = path.read_text().strip()
            self.assertRegex(token, r"^[0-9a-f]{64}$")
            tcp = d.tcp()
            self.assertEqual(call(tcp, "GET", "/v1/apps", headers={"Authorization": "Bearer " + token})[0], 200)
            self.assertEqual(call(tcp, "GET", "/v1/apps", headers={"Authorization": "Bearer " + TOKEN})[0], 401)
            tcp.close()
        finally:
            self.assertEqual(d.stop(), (0, ""))
        d = Daemon(self.dir / "second", None)  # the same token on the next start
        try:
            tcp = d.tcp()
            self.assertEqual(call(tcp, "GET", "/v1/apps", headers={"Authorization": "Bearer " + token})[0], 200)
            tcp.close()
        finally:
            self.assertEqual(d.stop(), (0, ""))
        self.assertFalse(os.path.exists(d.socket))  # removed on the way out
        # A file that is not a socket is never taken for a stale one.
        Path(d.socket).write_text("mine")
        p = subprocess.run([FLICKD, "--state-dir", str(d.state), "--socket", d.socket], capture_output=True, text=True,
                           env=d.env, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual((p.returncode, p.stderr), (1, f"flickd: {d.socket} exists and is not a socket\n"))
        self.assertEqual(Path(d.socket).read_text(), "mine")


class SystemdUnit(unittest.TestCase):
    def test_stopping_flickd_stops_no_machine(self):
        unit = Path(__file__).resolve().parents[2] / "tools" / "flickd" / "flickd.service.in"
        settings = {}
        for line in unit.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings[key] = value
        self.assertEqual(settings["KillMode"], "process")  # not the machines' flick-vmm processes
        self.assertEqual(settings["RuntimeDirectory"], "flick")  # /run/flick/api.sock
        self.assertEqual(settings["RuntimeDirectoryPreserve"], "yes")
        self.assertTrue(settings["ExecStart"].endswith("/flickd --state-dir /var/lib/flick"))


class Restart(FlickdTest):
    def test_kill_9_and_start_again(self):
        # flickd is only a client of the store: killed with a wait pending, a new one on the
        # same socket path (its stale file replaced) answers the same wait, and sees all.
        if not KERNEL:
            self.skipTest("needs FLICK_TEST_GUEST_KERNEL (the build's test guest)")
        root = self.dir / "restart"
        d = Daemon(root, TOKEN)
        c = d.unix()
        app = "restarted"
        self.assertEqual(call(c, "POST", "/v1/apps", {"app_name": app})[0], 201)
        status, m, _ = call(c, "POST", f"/v1/apps/{app}/machines", {"config": self.config(), "skip_launch": True})
        self.assertEqual(status, 200, m)
        wait = f"/v1/apps/{app}/machines/{m['id']}/wait?state=destroyed&timeout=30"
        pending = d.unix()
        pending.request("GET", wait)
        time.sleep(0.3)
        d.proc.kill()
        d.proc.wait()
        d.proc.stdout.close()
        d.proc.stderr.close()
        with self.assertRaises((http.client.HTTPException, OSError)):
            pending.getresponse()
        pending.close()
        c.close()
        self.assertTrue(os.path.exists(d.socket))  # left behind
        d = Daemon(root, TOKEN)
        try:
            c = d.unix()
            status, got, _ = call(c, "GET", f"/v1/apps/{app}/machines/{m['id']}")
            self.assertEqual((status, got["state"], got["version"]), (200, "created", 1))
            result = {}

            def wait_again() -> None:
                w = d.unix()
                result["r"] = call(w, "GET", wait)[:2]
                w.close()

            t = threading.Thread(target=wait_again)
            t.start()
            time.sleep(0.3)
            self.assertEqual(call(c, "DELETE", f"/v1/apps/{app}/machines/{m['id']}")[:2], (200, {"ok": True}))
            t.join(timeout=30)
            status, out = result["r"]
            self.assertEqual((status, out), (200, {"ok": True, "state": "destroyed", "version": 1,
                                                   "event_id": out.get("event_id")}))
            c.close()
        finally:
            self.assertEqual(d.stop(), (0, ""))


class Apps(FlickdTest):
    def test_crud(self):
        a = self.ok("POST", "/apps", {"app_name": "crud-a", "org_slug": "acme"}, want=201)
        self.assertEqual((a["name"], a["organization"]["slug"], a["machine_count"]), ("crud-a", "acme", 0))
        b = self.ok("POST", "/apps", {"name": "crud-b"}, want=201)  # fly-go's field
        self.assertEqual(b["organization"]["slug"], "personal")
        status, out = self.api("POST", "/apps", {"app_name": "crud-a"})
        self.assertEqual((status, out), (422, {"error": "Validation failed: Name has already been taken",
                                                 "status": "name_taken"}))
        listed = self.ok("GET", "/apps?org_slug=acme")
        self.assertEqual([x["name"] for x in listed["apps"]], ["crud-a"])
        self.assertEqual(listed["total_apps"], 1)
        self.assertEqual(self.ok("GET", "/apps/crud-b")["name"], "crud-b")
        self.assertEqual(self.error("GET", "/apps/nope", want=404), "app not found")
        self.assertEqual(self.api("DELETE", "/apps/crud-b"), (202, None))
        self.assertEqual(self.error("GET", "/apps/crud-b", want=404), "app not found")
        self.assertIn("app_name: required", self.error("POST", "/apps", {"org_slug": "x"}))


class Machines(FlickdTest):
    def setUp(self) -> None:
        super().setUp()
        self.needs_kernel()

    def test_create_get_list_and_filters(self):
        app = self.app("mach-list")
        m = self.create(app, "web-1", metadata={"role": "web"}, env={"A": "1"})
        self.assertRegex(m["id"], r"^[0-9a-f]{14}$")
        self.assertEqual((m["name"], m["state"], m["region"], m["version"]), ("web-1", "created", "local", 1))
        self.assertRegex(m["instance_id"], r"^[0-9A-Z]{26}$")
        self.assertEqual(m["config"]["image"], self.image)
        self.assertEqual(m["config"]["guest"]["memory_mb"], 128)
        self.assertEqual(m["config"]["env"], {"A": "1"})
        self.assertRegex(m["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([(e["type"], e["status"]) for e in m["events"]], [("launch", "created")])
        self.assertIsInstance(m["events"][0]["timestamp"], int)
        self.assertTrue(m["image_ref"]["digest"].startswith("sha256:"))
        db = self.create(app, "db-1", metadata={"role": "db"})

        self.assertEqual(self.ok("GET", f"/apps/{app}/machines/{m['id']}")["id"], m["id"])
        self.assertEqual(self.ok("GET", f"/apps/{app}/machines/web-1")["id"], m["id"])

        def ids(query: str) -> list[str]:
            return sorted(x["id"] for x in self.ok("GET", f"/apps/{app}/machines{query}"))

        both = sorted([m["id"], db["id"]])
        self.assertEqual(ids(""), both)
        self.assertEqual(ids("?metadata.role=web"), [m["id"]])
        self.assertEqual(ids("?metadata.role=db&region=local"), [db["id"]])
        self.assertEqual(ids("?region=ord"), [])
        self.assertEqual(ids("?state=created"), both)
        self.assertEqual(ids("?state=started,stopped"), [])
        self.assertEqual(ids("?state=started&state=created"), both)
        summary = self.ok("GET", f"/apps/{app}/machines?summary=true")
        self.assertNotIn("events", summary[0])
        self.assertIn("state: 'sleeping' is not a machine state",
                      self.error("GET", f"/apps/{app}/machines?state=sleeping"))

        self.assertEqual(self.ok("DELETE", f"/apps/{app}/machines/{db['id']}"), {"ok": True})
        self.assertEqual(ids(""), [m["id"]])
        deleted = {x["id"]: x["state"] for x in self.ok("GET", f"/apps/{app}/machines?include_deleted=true")}
        self.assertEqual(deleted, {m["id"]: "created", db["id"]: "destroyed"})

        # The CLI, another client of the same store, sees what flickd made.
        p = subprocess.run([FLICK, "machine", "list", "--json", "-a", app, "--state-dir", str(self.daemon.state)],
                           capture_output=True, text=True, env=self.daemon.env, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([x["id"] for x in json.loads(p.stdout)], [m["id"]])

    def test_create_refuses_bad_input_and_makes_nothing(self):
        app = self.app("mach-bad")
        path = f"/apps/{app}/machines"
        self.assertEqual(self.error("POST", path, {"config": {"image": self.image, "guest": {"cpuz": 1}}}),
                         "machine config: guest.cpuz: unknown field")
        self.assertEqual(self.error("POST", path, {"config": self.config(), "colour": "red"}),
                         "create request: colour: unknown field")
        self.assertEqual(self.error("POST", path, {"config": self.config(), "skip_launch": "yes"}),
                         "skip_launch: expected true or false")
        self.assertEqual(self.error("POST", path, {"skip_launch": True}), "config: required, a JSON object")
        self.assertTrue(self.error("POST", path, raw=b'{"config": {').startswith("invalid JSON in the request body"))
        self.assertEqual(self.error("POST", path, raw=b"[1]"), "request body: expected a JSON object")
        self.assertIn("guest.cpus", self.error("POST", path, {"config": {"image": self.image, "guest": {"cpus": 0}},
                                                              "skip_launch": True}))
        status, out = self.api("POST", path, {"config": self.config(), "region": "ord", "skip_launch": True})
        self.assertEqual((status, out["status"]), (412, "insufficient_capacity"), out)
        self.assertEqual(self.ok("GET", path), [])
        self.assertEqual(self.error("POST", "/apps/no-such-app/machines", {"config": self.config()}, want=404),
                         "app not found")
        self.assertEqual(self.error("GET", f"/apps/{app}/machines/0123456789abcd", want=404), "machine not found")
        self.assertEqual(self.error("GET", "/apps/no-such-app/machines/0123456789abcd", want=404), "app not found")
        m = self.create(app, "taken")
        self.assertEqual(self.api("POST", path, {"name": "taken", "config": self.config(), "skip_launch": True})[0],
                         409)
        self.assertEqual([x["id"] for x in self.ok("GET", path)], [m["id"]])

    def test_update_makes_a_new_version(self):
        app = self.app("mach-update")
        m = self.create(app, "u")
        path = f"/apps/{app}/machines/{m['id']}"
        u = self.ok("POST", path, {"config": self.config(guest={"cpus": 2, "memory_mb": 512}), "skip_launch": True})
        self.assertEqual((u["version"], u["config"]["guest"]["memory_mb"], u["config"]["guest"]["cpus"]), (2, 512, 2))
        self.assertNotEqual(u["instance_id"], m["instance_id"])
        self.assertEqual(u["state"], "created")
        versions = self.ok("GET", path + "/versions")
        self.assertEqual([v["version"] for v in versions], ["2", "1"])
        self.assertEqual(versions[1]["user_config"]["guest"]["memory_mb"], 128)
        # current_version that is no longer current
        status, _ = self.api("POST", path, {"config": self.config(), "skip_launch": True, "current_version": 1})
        self.assertEqual(status, 412)
        self.assertIn("name: a machine's name cannot change",
                      self.error("POST", path, {"config": self.config(), "name": "other", "skip_launch": True}))
        self.assertEqual(self.ok("GET", path)["version"], 2)

    def test_services_are_kept_as_given_and_checked(self):
        app = self.app("mach-services")
        services = [{"protocol": "tcp", "internal_port": 8080,
                     "ports": [{"port": 18080, "handlers": ["http"]}, {"port": 18443, "handlers": ["tls", "http"]}],
                     "autostart": True, "autostop": "suspend", "min_machines_running": 1,
                     "concurrency": {"type": "connections", "soft_limit": 20, "hard_limit": 25},
                     "autostop_idle": "2m", "checks": [{"type": "tcp", "interval": "15s"}]},
                    {"internal_port": 9000, "ports": [{"port": 19000}], "autostop": True}]
        m = self.create(app, "svc", services=services)  # the response validates against the document
        self.assertEqual(m["config"]["services"], services)
        path = f"/apps/{app}/machines/{m['id']}"
        bad = [{"internal_port": 8080, "ports": [{"port": 70000}]}]
        self.assertEqual(self.error("POST", path, {"config": self.config(services=bad), "skip_launch": True}),
                         "machine config: services[0].ports[0].port: 70000 is not in 1..65535")
        self.assertEqual(self.ok("GET", path)["config"]["services"], services)

    def test_metadata_and_cordon(self):
        app = self.app("mach-meta")
        m = self.create(app, "md", metadata={"a": "1"})
        path = f"/apps/{app}/machines/{m['id']}"
        self.assertEqual(self.api("POST", path + "/metadata/tier", {"value": "gold"}), (204, None))
        self.assertEqual(self.ok("GET", path + "/metadata"), {"a": "1", "tier": "gold"})
        self.assertEqual(self.ok("GET", path + "/metadata/tier"), {"value": "gold"})
        self.assertEqual(self.api("DELETE", path + "/metadata/a"), (204, None))
        self.assertEqual(self.error("GET", path + "/metadata/a", want=404), "metadata key not found")
        self.assertEqual(self.api("PUT", path + "/metadata", {"metadata": {"x": "9", "tier": None}}), (204, None))
        self.assertEqual(self.ok("GET", path)["config"]["metadata"], {"x": "9"})
        self.assertEqual(self.ok("POST", path + "/cordon"), {"ok": True})
        self.assertTrue(self.ok("GET", path)["cordoned"])
        self.assertEqual(self.ok("POST", path + "/uncordon"), {"ok": True})
        self.assertFalse(self.ok("GET", path)["cordoned"])
        events = self.ok("GET", path + "/events?limit=1")
        self.assertEqual(len(events), 1)

    def test_lease_and_nonce_header(self):
        app = self.app("mach-lease")
        m = self.create(app, "leased")
        path = f"/apps/{app}/machines/{m['id']}"
        self.assertEqual(self.error("GET", path + "/lease", want=404), "lease not found")
        got = self.ok("POST", path + "/lease?ttl=60", want=201)  # as flyctl sends it
        self.assertEqual(got["status"], "success")
        nonce = got["data"]["nonce"]
        self.assertRegex(nonce, r"^[0-9a-f]{32}$")
        self.assertGreater(got["data"]["expires_at"], time.time() + 30)
        self.assertEqual(self.ok("GET", path + "/lease")["data"]["nonce"], nonce)
        # Another client: refused with Fly's envelope, and its mutating calls too.
        status, out = self.api("POST", path + "/lease", {"ttl": 30, "description": "other"})
        self.assertEqual(status, 409, out)
        self.assertEqual((out["status"], out["code"]), ("error", "invalid"))
        self.assertRegex(out["message"], rf"^machine ID {m['id']} lease currently held by \S+, expires at ")
        err = self.error("POST", path + "/cordon", want=409)
        self.assertRegex(err, rf"^aborted: machine ID {m['id']} lease currently held by \S+, expires at \S+Z$")
        self.assertEqual(self.api("POST", path, {"config": self.config(), "skip_launch": True})[0], 409)
        self.assertEqual(self.api("DELETE", path)[0], 409)
        self.assertEqual(self.api("POST", path + "/metadata/k", {"value": "v"}), (204, None))  # not guarded
        # The holder, with the header.
        held = {"fly-machine-lease-nonce": nonce}
        self.assertEqual(self.ok("POST", path + "/cordon", headers=held), {"ok": True})
        refreshed = self.ok("POST", path + "/lease", {"ttl": 120}, want=201, headers=held)
        self.assertEqual(refreshed["data"]["nonce"], nonce)
        self.assertNotEqual(refreshed["data"]["version"], got["data"]["version"])
        self.assertEqual(self.api("DELETE", path + "/lease", headers={"fly-machine-lease-nonce": "0" * 32})[0], 404)
        self.assertEqual(self.ok("DELETE", path + "/lease", headers=held), {"status": "success", "data": {"ok": True}})
        self.assertEqual(self.ok("POST", path + "/uncordon"), {"ok": True})
        # A lease taken at create comes back as the machine's nonce.
        body = {"config": self.config(), "skip_launch": True, "lease_ttl": 30}
        made = self.ok("POST", f"/apps/{app}/machines", body)
        self.assertEqual(self.ok("GET", f"/apps/{app}/machines/{made['id']}/lease")["data"]["nonce"], made["nonce"])

    def test_starts_without_kvm(self):
        # This flickd's KVM device does not exist: a start fails as Fly's capacity errors do
        # (5xx, nothing half-made), and calls that need a running machine say so.
        app = self.app("mach-nokvm")
        status, out = self.api("POST", f"/apps/{app}/machines", {"name": "launched", "config": self.config()})
        self.assertEqual(status, 503, out)
        self.assertIn("/nonexistent/kvm", out["error"])
        self.assertEqual(self.ok("GET", f"/apps/{app}/machines"), [])
        m = self.create(app, "idle")
        path = f"/apps/{app}/machines/{m['id']}"
        self.assertEqual(self.api("POST", path + "/start")[0], 503)
        self.assertEqual(self.ok("GET", path)["state"], "created")
        self.assertEqual(self.ok("POST", path + "/stop", {"signal": "SIGTERM", "timeout": "5s"}), {"ok": True})
        self.assertIn("exec needs a started machine",
                      self.error("POST", path + "/exec", {"command": ["true"]}, want=412))
        self.assertIn("ps needs a started machine", self.error("GET", path + "/ps", want=412))
        self.assertEqual(self.error("GET", path + "/ps?sort_by=colour"),
                         "sort_by: 'colour' is not one of pid, cpu, rss, rtime, stime, command")
        self.assertEqual(self.error("GET", path + "/ps?order=up"), "order: 'up' is neither asc nor desc")
        self.assertEqual(self.error("GET", f"/apps/{app}/machines/0123456789abcd/ps", want=404), "machine not found")
        self.assertIn("not running", self.error("POST", path + "/signal", {"signal": "SIGTERM"}, want=412))
        self.assertEqual(self.error("POST", path + "/signal", {"signal": "SIGNOPE"}), 'signal: "SIGNOPE" is not a signal')
        self.assertEqual(self.error("POST", path + "/stop", {"timeout": "soon"})[:9], "timeout: ")

    def test_concurrent_clients(self):
        # Many clients at once through one flickd (one Host, shared by its workers): each
        # creates, updates, leases and deletes its own machine; all get answers, none a 5xx,
        # and nothing is lost or leaked.
        app = self.app("mach-many")
        failures: list[str] = []

        def client(i: int) -> None:
            conn = self.daemon.tcp(timeout=60) if i % 2 else self.daemon.unix(timeout=60)
            auth = {"Authorization": "Bearer " + TOKEN}
            base = f"/v1/apps/{app}/machines"

            def do(method, path, body=None, want=200, headers=None):
                status, out, _ = call(conn, method, path, body, {**auth, **(headers or {})})
                if status != want:
                    failures.append(f"client {i}: {method} {path}: {status} {out}")
                return out

            m = do("POST", base, {"name": f"c{i}", "config": self.config(metadata={"n": str(i)}), "skip_launch": True})
            if not m:
                return
            path = f"{base}/{m['id']}"
            for memory in (256, 384):
                do("POST", path, {"config": self.config(guest={"cpus": 1, "memory_mb": memory}, metadata={"n": str(i)}),
                                  "skip_launch": True})
            nonce = do("POST", path + "/lease?ttl=30", want=201)["data"]["nonce"]
            do("POST", path + "/metadata/k", {"value": str(i)}, want=204)
            do("POST", path + "/cordon", headers={"fly-machine-lease-nonce": nonce})
            got = do("GET", path)
            if (got["version"], got["config"]["guest"]["memory_mb"], got["config"]["metadata"]) != \
                    (3, 384, {"n": str(i), "k": str(i)}):
                failures.append(f"client {i}: {got['version']} {got['config']}")
            do("DELETE", path, headers={"fly-machine-lease-nonce": nonce})
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(failures, [])
        self.assertEqual(self.ok("GET", f"/apps/{app}/machines"), [])
        states = [x["state"] for x in self.ok("GET", f"/apps/{app}/machines?include_deleted=true")]
        self.assertEqual(states, ["destroyed"] * 16)

    def test_waits_hold_no_worker(self):
        app = self.app("mach-wait")
        m = self.create(app, "w")
        path = f"/v1/apps/{app}/machines/{m['id']}"
        done = self.ok("GET", f"/apps/{app}/machines/{m['id']}/wait?state=created")
        self.assertEqual(done, {"ok": True, "state": "created", "version": 1, "event_id": done["event_id"]})
        self.assertIn("is not a state to wait for", self.error("GET", f"/apps/{app}/machines/{m['id']}/wait?state=x"))
        # More pending waits than flickd has workers, half on TCP; then a GET still answers.
        waits = []
        for i in range(3 * WORKERS):
            c = self.daemon.tcp() if i % 2 else self.daemon.unix()
            c.request("GET", path + "/wait?state=started&timeout=3", headers={"Authorization": "Bearer " + TOKEN})
            waits.append(c)
        time.sleep(0.3)
        t0 = time.monotonic()
        self.assertEqual(self.ok("GET", f"/apps/{app}/machines/{m['id']}")["id"], m["id"])
        self.assertEqual(self.api("GET", "/apps")[0], 200)
        self.assertLess(time.monotonic() - t0, 1.5)
        for c in waits:
            r = c.getresponse()
            out = json.loads(r.read())
            self.assertEqual(r.status, 408, out)
            self.assertEqual(out["error"], "deadline_exceeded: machine failed to reach desired state, started, "
                                           "currently created")
            c.close()
        self.assertGreaterEqual(time.monotonic() - t0, 2)
        # A wait answered by another client's change: the CLI destroys the machine.
        answer = {}

        def wait_destroyed() -> None:
            c = self.daemon.unix()
            answer["r"] = call(c, "GET", path + "/wait?state=destroyed&timeout=20")
            c.close()

        t = threading.Thread(target=wait_destroyed)
        t.start()
        time.sleep(0.3)
        p = subprocess.run([FLICK, "machine", "destroy", m["id"], "--state-dir", str(self.daemon.state)],
                           capture_output=True, text=True, env=self.daemon.env, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        t.join(timeout=20)
        status, out = answer["r"][:2]
        self.assertEqual((status, out), (200, {"ok": True, "state": "destroyed", "version": 1,
                                               "event_id": out.get("event_id")}))
        self.assertGreater(int(out["event_id"]), int(done["event_id"]))

    def test_wait_for_a_version_and_after_an_event(self):
        app = self.app("mach-wait-version")
        m = self.create(app, "v")
        path = f"/apps/{app}/machines/{m['id']}"
        ids = [int(e["id"]) for e in self.ok("GET", path)["events"]]
        self.assertEqual(len(ids), len(set(ids)))
        latest = max(ids)
        self.assertEqual(self.ok("GET", path + "/wait?state=created")["event_id"], str(latest))
        # Nothing has happened since the latest event: the wait runs out.
        self.assertEqual(self.error("GET", path + f"/wait?state=created&from_event_id={latest}&timeout=1", want=408),
                         "deadline_exceeded: machine failed to reach desired state, created, currently created")
        u = self.ok("POST", path, {"config": self.config(env={"V": "2"}), "skip_launch": True})
        after = self.ok("GET", path + f"/wait?state=created&from_event_id={latest}&timeout=5")
        self.assertEqual((after["version"], after["state"]), (2, "created"))
        self.assertGreater(int(after["event_id"]), latest)
        # A version by its instance_id or its number: the current one answers, a replaced one is 412.
        self.assertEqual(self.ok("GET", path + f"/wait?state=created&instance_id={u['instance_id']}")["version"], 2)
        self.assertEqual(self.ok("GET", path + "/wait?state=created&version=2")["version"], 2)
        for old in (f"instance_id={m['instance_id']}", "version=1"):
            self.assertEqual(self.error("GET", path + f"/wait?state=created&{old}", want=412),
                             "failed_precondition: version 1 of the machine was replaced by version 2")
        self.assertIn("is not a version of machine", self.error("GET", path + "/wait?instance_id=01NOSUCHVERSION"))
        self.assertIn("is not an event id", self.error("GET", path + "/wait?from_event_id=soon"))


class CliThroughApi(FlickdTest):
    """`flick --api unix:SOCKET` and `flick --api http://127.0.0.1:PORT` (with FLICK_API_TOKEN)
    against `flick` on the same state directory without --api."""

    def flick(self, *args: str, api: str | None = None, token: str | None = None, env: dict | None = None):
        e = dict(self.daemon.env, **(env or {}))
        e.pop("FLICK_API", None)
        e.pop("FLICK_API_TOKEN", None)
        if token:
            e["FLICK_API_TOKEN"] = token
        cmd = [FLICK, *(["--api", api] if api else []), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env={**e, **(env or {})}, timeout=60,
                              stdin=subprocess.DEVNULL)

    def unix(self, *args: str):
        return self.flick(*args, api="unix:" + self.daemon.socket)

    def tcp(self, *args: str):
        return self.flick(*args, api=f"http://127.0.0.1:{self.daemon.port}", token=TOKEN)

    def out(self, p) -> str:
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def same(self, *args: str) -> str:
        """Runs args over the store, then through flickd both ways: the same output each time."""
        local = self.out(self.flick(*args))
        self.assertEqual(self.out(self.unix(*args)), local, args)
        self.assertEqual(self.out(self.tcp(*args)), local, args)
        return local

    def refused(self, p, code: int, message: str) -> None:
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertIn(message, p.stderr)

    def test_apps(self):
        self.assertEqual(self.out(self.unix("app", "create", "cli-a", "--org", "acme")), "app cli-a created\n")
        made = json.loads(self.out(self.tcp("app", "create", "cli-b", "--json")))
        self.assertEqual((made["name"], made["organization"]["slug"]), ("cli-b", "personal"))
        self.assertIn("cli-a", self.same("app", "list"))
        listed = json.loads(self.same("app", "list", "--json"))
        self.assertEqual({a["name"] for a in listed} >= {"cli-a", "cli-b", "default"}, True)
        self.refused(self.unix("app", "create", "cli-a"), 1, "flick: app name cli-a has already been taken")
        self.assertEqual(self.out(self.tcp("app", "destroy", "cli-b")), "app cli-b destroyed\n")
        self.refused(self.tcp("app", "destroy", "cli-b"), 1, "flick: app cli-b not found")
        # FLICK_API instead of --api.
        p = self.flick("app", "list", "--json", env={"FLICK_API": "unix:" + self.daemon.socket,
                                                      "FLICK_STATE_DIR": str(self.dir / "elsewhere")})
        self.assertEqual([a["name"] for a in json.loads(self.out(p))], [a["name"] for a in listed if a["name"] != "cli-b"])

    def test_tokens_and_endpoints(self):
        url = f"http://127.0.0.1:{self.daemon.port}"
        for token in ("wrong", None):
            p = self.flick("app", "list", api=url, token=token)
            self.refused(p, 1, f"flick: flickd at {url} refused the token (unauthorized: ")
            self.assertIn("set FLICK_API_TOKEN", p.stderr)
        # On the Unix socket none is needed, and a wrong one is refused.
        self.out(self.flick("app", "list", api="unix:" + self.daemon.socket))
        self.refused(self.flick("app", "list", api="unix:" + self.daemon.socket, token="wrong"), 1,
                     "refused the token (unauthorized: the token is not valid)")
        self.refused(self.flick("app", "list", api="unix:" + str(self.dir / "no.sock")), 1,
                     f"flick: cannot reach flickd at unix:{self.dir / 'no.sock'}: ")
        self.refused(self.flick("app", "list", api="ftp://x"), 2,
                     ": --api takes http://HOST:PORT, https://HOST:PORT or unix:PATH, not 'ftp://x'")

    def test_commands_that_need_the_store_refuse_api(self):
        for args in (["machine", "run", "busybox"], ["machine", "logs", "x"], ["machine", "console", "x"],
                     ["image", "ls"], ["volume", "list"]):
            p = self.unix(*args)
            self.refused(p, 2, f"flick {' '.join(args[:2])}: not available with --api")
        self.refused(self.unix("app", "list", "--state-dir", str(self.dir)), 2,
                     "flick app list: --state-dir is flickd's to choose: not with --api")
        self.refused(self.unix("machine", "create", "--kernel", "/k", "busybox"), 2,
                     "flick machine create: --kernel is flickd's to choose: not with --api")

    def test_machines(self):
        self.needs_kernel()
        app = "cli-machines"
        self.out(self.unix("app", "create", app))
        made = self.unix("machine", "create", "-a", app, "--name", "web", "--metadata", "role=web", "--memory", "128",
                         "--entrypoint", "/bin/sh", self.image, "--", "-c", "sleep 1")
        mid = self.out(made).strip()
        self.assertRegex(mid, r"^[0-9a-f]{14}$")
        self.refused(self.tcp("machine", "create", "-a", app, "--name", "web", self.image), 1,
                     f"flick: machine name web is taken in app {app} (by machine {mid})")
        second = json.loads(self.out(self.tcp("machine", "create", "-a", app, "--json", self.image)))
        self.assertNotIn("events", second)
        self.assertEqual(second["state"], "created")

        listed = json.loads(self.same("machine", "list", "-a", app, "--json"))
        self.assertEqual(sorted(m["id"] for m in listed), sorted([mid, second["id"]]))
        self.same("machine", "list", "-a", app)
        self.same("machine", "list", "-a", app, "--state", "created,stopped")
        self.assertEqual(self.same("machine", "list", "-a", app, "--state", "started"), f"No machines in app {app}.\n")
        status = self.same("machine", "status", "web", "-a", app)
        self.assertIn("Command       = /bin/sh -c 'sleep 1'", status)
        self.same("machine", "status", mid, "--json")  # by id, in any app
        self.refused(self.unix("machine", "status", "nope", "-a", app), 1, f"flick: machine nope not found in app {app}")
        self.refused(self.tcp("machine", "status", "web", "-a", "no-app"), 1, "flick: app no-app not found")

        # update, metadata, cordon
        p = self.out(self.unix("machine", "update", mid, "--memory", "256", "--env", "A=1", "--skip-start"))
        self.assertRegex(p, rf"^machine {mid} updated to version 2 \(instance [0-9A-Z]{{26}}\)\n$")
        after = json.loads(self.out(self.flick("machine", "status", mid, "--json")))
        self.assertEqual((after["version"], after["config"]["guest"]["memory_mb"], after["config"]["env"]),
                         (2, 256, {"A": "1"}))
        self.assertEqual(self.out(self.tcp("machine", "metadata", "set", mid, "tier", "gold")), "")
        self.assertEqual(self.same("machine", "metadata", "get", mid), "role=web\ntier=gold\n")
        self.assertEqual(self.same("machine", "metadata", "get", mid, "tier", "--json"), '{\n  "value": "gold"\n}\n')
        self.out(self.unix("machine", "metadata", "delete", mid, "tier"))
        self.refused(self.tcp("machine", "metadata", "get", mid, "tier"), 1, f"machine {mid} has no metadata key tier")
        self.assertEqual(self.out(self.tcp("machine", "cordon", mid)), f"machine {mid} cordoned\n")
        self.assertTrue(json.loads(self.same("machine", "status", mid, "--json"))["cordoned"])
        self.assertEqual(self.out(self.unix("machine", "uncordon", mid)), f"machine {mid} uncordoned\n")

        # A lease: what changes the machine needs its nonce.
        nonce = self.out(self.tcp("machine", "lease", "acquire", mid, "--ttl", "60", "--description", "cli")).strip()
        self.assertRegex(nonce, r"^[0-9a-f]{32}$")
        shown = self.same("machine", "lease", "show", mid)
        self.assertIn(f"Nonce:       {nonce}\n", shown)
        self.assertIn("Description: cli\n", shown)
        self.assertIn("Lease", self.same("machine", "status", mid))
        for run in (self.unix, self.tcp):
            self.refused(run("machine", "cordon", mid), 1, f"flick: machine ID {mid} lease currently held by ")
            self.refused(run("machine", "destroy", mid), 1, "lease currently held by ")
        self.assertEqual(self.out(self.unix("machine", "cordon", mid, "--lease-nonce", nonce)), f"machine {mid} cordoned\n")
        self.assertEqual(self.out(self.tcp("machine", "uncordon", mid, "--lease-nonce", nonce)),
                         f"machine {mid} uncordoned\n")
        self.refused(self.unix("machine", "lease", "release", mid, "0" * 32), 1, "holds no lease with that nonce")
        self.assertEqual(self.out(self.tcp("machine", "lease", "release", mid, nonce)), f"machine {mid} lease released\n")
        self.refused(self.unix("machine", "lease", "show", mid), 1, f"flick: lease not found: machine {mid} has no live lease")

        # No KVM here: a start fails as over the store, exec and wait say why.
        self.refused(self.unix("machine", "start", mid), 1, "/nonexistent/kvm")
        p = self.tcp("machine", "exec", mid, "--", "true")
        self.assertEqual(p.returncode, 125, p.stderr)
        self.assertIn("exec needs a started machine", p.stderr)
        self.refused(self.unix("machine", "exec", "-it", mid, "--", "sh"), 125, "flick machine exec -i/-t: not available with --api")
        self.refused(self.unix("machine", "wait", mid, "--timeout", "1"), 1,
                     "machine failed to reach desired state, started, currently created")
        self.assertEqual(self.out(self.tcp("machine", "stop", mid)), f"machine {mid} created\n")

        clone = self.out(self.tcp("machine", "clone", mid, "--name", "web-2", "--skip-start")).strip()
        self.assertEqual(json.loads(self.out(self.flick("machine", "status", clone, "--json")))["config"],
                         after["config"])
        self.assertEqual(self.out(self.unix("machine", "destroy", mid, second["id"], clone)),
                         "".join(f"machine {i} destroyed\n" for i in (mid, second["id"], clone)))
        self.assertEqual(self.same("machine", "list", "-a", app, "--json"), "[]\n")
        self.assertEqual(self.same("machine", "destroy", mid, "-a", app), f"machine {mid} destroyed\n")  # done already


class Volumes(FlickdTest):
    def test_crud_and_attached(self):
        app = self.app("vols")
        v = self.ok("POST", f"/apps/{app}/volumes", {"name": "data", "size_gb": 1, "region": "local"})
        self.assertRegex(v["id"], r"^vol_[0-9a-z]{16}$")
        self.assertEqual((v["name"], v["size_gb"], v["region"], v["state"], v["attached_machine_id"]),
                         ("data", 1, "local", "created", None))
        self.assertEqual([x["id"] for x in self.ok("GET", f"/apps/{app}/volumes")], [v["id"]])
        self.assertEqual(self.ok("GET", f"/apps/{app}/volumes/{v['id']}")["name"], "data")
        self.assertEqual(self.error("GET", f"/apps/{app}/volumes/vol_0000000000000000", want=404), "volume not found")
        self.assertIn("size: unknown field", self.error("POST", f"/apps/{app}/volumes", {"name": "x", "size": 1}))
        if KERNEL:  # attached to a machine: not deleted
            self.create(app, "with-volume", mounts=[{"volume": v["id"], "path": "/data"}])
            err = self.error("DELETE", f"/apps/{app}/volumes/{v['id']}", want=409)
            self.assertTrue(err.startswith("failed_precondition: volume is currently bound to machine: "), err)
            self.ok("DELETE", f"/apps/{app}/machines/with-volume")
        gone = self.ok("DELETE", f"/apps/{app}/volumes/{v['id']}")
        self.assertEqual((gone["id"], gone["state"]), (v["id"], "destroyed"))
        self.assertEqual(self.ok("GET", f"/apps/{app}/volumes"), [])

    def test_extend(self):
        app = self.app("vols-extend")
        v = self.ok("POST", f"/apps/{app}/volumes", {"name": "grow", "size_gb": 1})
        path = f"/apps/{app}/volumes/{v['id']}/extend"
        out = self.ok("PUT", path, {"size_gb": 3})
        self.assertEqual((out["needs_restart"], out["volume"]["id"], out["volume"]["size_gb"]), (False, v["id"], 3))
        self.assertEqual(os.stat(v["path"]).st_size, 3 << 30)
        self.assertEqual(os.stat(v["path"]).st_blocks * 512 < 64 << 20, True)  # still sparse
        # The file system is whole, its old size until a guest mounts it.
        fsck = subprocess.run(["e2fsck", "-fn", v["path"]], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
        self.assertEqual(self.ok("GET", f"/apps/{app}/volumes/{v['id']}")["size_gb"], 3)
        self.assertIn("can only grow", self.error("PUT", path, {"size_gb": 2}))
        self.assertEqual(self.ok("PUT", path, {"size_gb": 3})["volume"]["size_gb"], 3)  # the same size: no change
        self.assertEqual(self.error("PUT", path, {}), "size_gb: required")
        self.assertIn("size: unknown field", self.error("PUT", path, {"size": 4}))
        self.assertEqual(self.error("PUT", f"/apps/{app}/volumes/vol_0000000000000000/extend", {"size_gb": 4}, want=404),
                         "volume not found")
        self.assertEqual(os.stat(v["path"]).st_size, 3 << 30)  # nothing changed by the refused ones
        # The CLI, on the same store.
        p = subprocess.run([FLICK, "volume", "extend", v["id"], "--size", "4", "--app", app, "--json",
                            "--state-dir", str(self.daemon.state)],
                           capture_output=True, text=True, env=self.daemon.env, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["size_gb"], 4)
        self.assertEqual(self.ok("GET", f"/apps/{app}/volumes/{v['id']}")["size_gb"], 4)


class Bodies(FlickdTest):
    def raw_exchange(self, head: bytes, body: bytes = b"") -> bytes:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.daemon.socket)
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data

    def test_oversized_bodies_get_413(self):
        # Announced: answered before the body is sent.
        head = (f"POST /v1/apps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {MAX_BODY + 1}\r\n\r\n").encode()
        reply = self.raw_exchange(head)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply)
        self.assertIn(b'"error":"request body too large', reply)
        # Chunked, so only counting tells.
        chunk = b"x" * (MAX_BODY // 2 + 1)
        body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(2)) + b"0\r\n\r\n"
        head = b"POST /v1/apps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        reply = self.raw_exchange(head, body)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply)
        self.assertEqual(self.error("GET", "/nothing/here", want=404), "not found: /v1/nothing/here")

    def test_slow_and_malformed_requests_stall_no_one(self):
        slow = []
        for _ in range(3 * WORKERS):  # half a body each, then silence
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.daemon.socket)
            s.sendall(b"POST /v1/apps HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"app_")
            slow.append(s)
        t0 = time.monotonic()
        self.assertEqual(self.api("GET", "/apps")[0], 200)
        self.assertLess(time.monotonic() - t0, 1.5)
        reply = self.raw_exchange(b"NOT HTTP AT ALL\r\n\r\n")
        self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply)
        self.assertEqual(self.api("GET", "/apps")[0], 200)
        for s in slow:
            s.close()
        self.assertEqual(self.api("GET", "/apps")[0], 200)


class OpenApi(FlickdTest):
    def documented(self) -> set[tuple[str, str]]:
        return {(m.upper(), path) for path, item in SPEC["paths"].items() for m in item if m in METHODS}

    @staticmethod
    def filled(template: str) -> str:
        # Names of nothing that exists: each route answers its own 404, never "no such route".
        values = {"app_name": "no-such-app", "machine_id": "0123456789abcd", "volume_id": "vol_0000000000000000",
                  "key": "k"}
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)

    def test_the_document_is_served_as_committed(self):
        committed = SPEC_FILE.read_bytes()
        self.assertRegex(SPEC["openapi"], r"^3\.0\.\d+$")
        for conn, headers in ((self.conn, {}), (self.daemon.tcp(), {}),  # public on TCP too, as Fly's is
                              (self.daemon.tcp(), {"Authorization": "Bearer " + TOKEN})):
            conn.request("GET", "/openapi.json", headers=headers)
            r = conn.getresponse()
            self.assertEqual((r.status, r.getheader("Content-Type"), r.read()), (200, "application/json", committed))
            if conn is not self.conn:
                conn.close()
        # call() records it, and it validates as any other response.
        self.assertEqual(call(self.conn, "GET", "/openapi.json")[1], SPEC)

    def test_the_document_holds_together(self):
        ids = []
        for path, item in SPEC["paths"].items():
            params = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            for method, op in item.items():
                if method not in METHODS:
                    continue
                ids.append(op["operationId"])
                names = params | {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                self.assertEqual(names, set(re.findall(r"\{(\w+)\}", path)), (method, path))
                self.assertTrue(op["responses"], (method, path))
                self.assertNotIn("default", op["responses"], (method, path))  # every status spelled out
        self.assertEqual(len(ids), len(set(ids)), "operationIds are unique")
        refs = re.findall(r'"\$ref": "([^"]+)"', SPEC_FILE.read_text())
        self.assertTrue(refs)
        for ref in refs:
            spec_ref(ref)  # KeyError if it names nothing
        for name, schema in SPEC["components"]["schemas"].items():
            jsonschema.Draft4Validator.check_schema(json_schema(schema))

    def test_the_check_can_fail(self):
        # Negative controls for the check every response goes through.
        path = "/v1/apps/a/machines/0123456789abcd"
        good = json.dumps({"ok": True}).encode()
        self.assertEqual(response_problems("DELETE", path, 200, "application/json", good), [])
        self.assertTrue(response_problems("DELETE", path, 200, "application/json", b'{"ok": true, "x": 1}'))
        self.assertTrue(response_problems("DELETE", path, 200, "application/json", b'{"ok": false}'))
        self.assertTrue(response_problems("DELETE", path, 200, "text/html", good))
        self.assertTrue(response_problems("DELETE", path, 200, "application/json", b""))
        self.assertTrue(response_problems("DELETE", path, 418, "application/json", b'{"error": "teapot"}'))
        self.assertTrue(response_problems("DELETE", "/v1/apps/a", 202, "application/json", good))  # no body there
        self.assertTrue(response_problems("GET", "/v1/apps/a", 200, "application/json", b'{"name": "a"}'))
        self.assertTrue(response_problems("GET", "/v1/elsewhere", 200, "application/json", good))
        self.assertEqual(response_problems("GET", "/v1/elsewhere", 404, "application/json", b'{"error": "x"}'), [])
        self.assertTrue(response_problems("PATCH", "/v1/apps", 200, "application/json", good))
        volume = {"id": "vol_0123456789abcdef", "name": "v", "state": "created", "size_gb": 1,
                  "attached_machine_id": None, "app": "a", "path": "/x", "region": "local"}
        vpath = "/v1/apps/a/volumes/vol_0123456789abcdef"
        self.assertEqual(response_problems("GET", vpath, 200, "application/json", json.dumps(volume).encode()), [])
        volume["attached_machine_id"] = 7
        self.assertTrue(response_problems("GET", vpath, 200, "application/json", json.dumps(volume).encode()))

    def test_flickd_serves_exactly_the_documented_routes(self):
        p = subprocess.run([FLICKD, "--routes"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        served = {tuple(line.split(" ")) for line in p.stdout.splitlines()}
        self.assertEqual(len(served), len(p.stdout.splitlines()), "no route twice")
        self.assertGreater(len(served), 30)
        self.assertEqual(served, self.documented())

    def test_each_documented_route_answers_and_no_other(self):
        documented = self.documented()
        for method, template in sorted(documented):
            path = self.filled(template)
            status, out, _ = call(self.conn, method, path)
            self.assertNotEqual(status, 405, (method, path, out))
            if status == 404:  # the route's own "app not found", never dispatch's "not found: <path>"
                self.assertFalse(out["error"].startswith("not found: "), (method, path, out))
        for template in SPEC["paths"]:
            path = self.filled(template)
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                if (method, template) not in documented:
                    self.assertEqual(call(self.conn, method, path)[:2], (405, {"error": "method not allowed"}),
                                     (method, path))
            deeper = path + "/more"
            if spec_operation("GET", deeper)[0] is None:
                self.assertEqual(call(self.conn, "GET", deeper)[:2], (404, {"error": "not found: " + deeper}))
        # Outside /v1 only the document itself is served, and nothing else without a token on TCP.
        tcp = self.daemon.tcp()
        self.assertEqual(call(tcp, "GET", "/v1/apps")[0], 401)
        self.assertEqual(call(tcp, "GET", "/openapi.yaml")[0], 401)
        tcp.close()
        self.assertEqual(self.api("GET", "/openapi.json")[0], 404)


class Placement(FlickdTest):
    def test_a_start_beyond_capacity_is_refused_and_changes_nothing(self):
        self.needs_kernel()
        d = Daemon(self.dir / "small", TOKEN, "--capacity-cpus", "2", "--capacity-memory-mb", "512")
        c = d.unix()
        try:
            self.assertEqual(call(c, "POST", "/v1/apps", {"app_name": "tight"})[0], 201)
            big = {"image": self.image, "guest": {"cpus": 1, "memory_mb": 1024}}
            status, out, _ = call(c, "POST", "/v1/apps/tight/machines", {"name": "big", "config": big})
            self.assertEqual((status, out.get("status")), (503, "insufficient_capacity"), out)
            self.assertIn("room for 2 guest CPUs and 512 MB", out["error"])
            self.assertEqual(call(c, "GET", "/v1/apps/tight/machines")[1], [])  # nothing made
            status, m, _ = call(c, "POST", "/v1/apps/tight/machines", {"config": big, "skip_launch": True})
            self.assertEqual(status, 200, m)
            path = f"/v1/apps/tight/machines/{m['id']}"
            status, out, _ = call(c, "POST", path + "/start")
            self.assertEqual((status, out.get("status")), (503, "insufficient_capacity"), out)
            self.assertEqual(call(c, "GET", path)[1]["state"], "created")
            three = {"image": self.image, "guest": {"cpus": 3, "memory_mb": 128}}
            status, out, _ = call(c, "POST", path, {"config": three})
            self.assertEqual((status, out.get("status")), (503, "insufficient_capacity"), out)
            self.assertEqual(call(c, "GET", path)[1]["config"]["guest"]["cpus"], 1)  # no new version
            # Another's lease is answered first: 409, not a capacity error, with no nonce.
            status, lease, _ = call(c, "POST", path + "/lease?ttl=60")
            self.assertEqual(status, 201, lease)
            for method, p, body in (("POST", path + "/start", None), ("POST", path, {"config": three})):
                status, out, _ = call(c, method, p, body)
                self.assertEqual(status, 409, out)
                self.assertIn("lease currently held by", out["error"])
            status, out, _ = call(c, "POST", path + "/start", headers={"fly-machine-lease-nonce": lease["data"]["nonce"]})
            self.assertEqual((status, out.get("status")), (503, "insufficient_capacity"), out)
            self.assertEqual(call(c, "DELETE", path + "/lease", headers={"fly-machine-lease-nonce": lease["data"]["nonce"]})[0], 200)
            # One that fits gets past placement to the start, which finds no KVM here.
            status, out, _ = call(c, "POST", path, {"config": {**big, "guest": {"cpus": 2, "memory_mb": 512}}})
            self.assertEqual(status, 503, out)
            self.assertNotIn("status", out)
            self.assertIn("/nonexistent/kvm", out["error"])
        finally:
            c.close()
            self.assertEqual(d.stop(), (0, ""))


class DaemonStatus(FlickdTest):
    def status(self, d: Daemon) -> tuple[int, dict]:
        r = subprocess.run([FLICK, "daemon", "status", "--json"], env=d.env, capture_output=True, text=True)
        return r.returncode, json.loads(r.stdout)

    def test_status_and_one_flickd_per_state_directory(self):
        d = Daemon(self.dir / "status", TOKEN)
        try:
            code, st = self.status(d)
            self.assertEqual((code, st["running"], st["answers"], st["pid"]), (0, True, True, d.proc.pid), st)
            self.assertEqual((st["socket"], st["listen"]), (d.socket, [f"127.0.0.1:{d.port}"]))
            text = subprocess.run([FLICK, "daemon", "status"], env=d.env, capture_output=True, text=True).stdout
            self.assertIn(f"unix:{d.socket}", text)
            self.assertIn(f"http://127.0.0.1:{d.port}", text)
            # A second flickd on the same state directory, even on another socket, is refused.
            second = subprocess.run([FLICKD, "--state-dir", str(d.state), "--socket", str(d.root / "other.sock"),
                                     "--no-network"], env=d.env, capture_output=True, text=True, timeout=30)
            self.assertEqual(second.returncode, 1)
            self.assertIn("another flickd serves", second.stderr)
            self.assertFalse((d.root / "other.sock").exists())
        finally:
            self.assertEqual(d.stop(), (0, ""))
        code, st = self.status(d)
        self.assertEqual((code, st["running"]), (3, False), st)


if __name__ == "__main__":
    unittest.main(verbosity=2)
