#!/usr/bin/env python3
"""flickd with real guests: Fly's Machines API end to end, driven by curl and http.client.

Outside: fetches Debian's cloud kernel and builds a busybox OCI layout. Inside the test host
(or directly where /dev/kvm runs Linux), against one flickd:
  - create app -> create machine -> wait started -> exec -> stop -> wait stopped -> update
    memory -> start (the guest sees the new memory) -> clone (as flyctl does: get, then create
    from its config) -> list with filters -> lease: a call without the nonce refused, with it
    accepted -> destroy; every body checked field by field;
  - placement: with room for two guests, a third start is refused and changes nothing;
  - flickd killed (-9) while machines run and a wait is pending, and the machines' runs killed
    as a host crash would: a new flickd lists every machine in its true state, starts the
    `restart.policy: always` one again, and answers the same wait.

  flickd_linux_test.py FLICKD FLICK
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "testhost"))
import kernel_cache  # noqa: E402
import testhost  # noqa: E402

TOKEN = "linux-test-token"
BOOT = 300  # seconds a guest may take to start under the test host's emulation
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
SLEEPER = ["sleep", "3600"]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Flickd:
    def __init__(self, work: Path, state: Path, kernel: str, modules: str, flickd: str, *args: str):
        self.socket = str(work / "api.sock")
        self.env = dict(os.environ, FLICK_HOME=str(work / "cache"), XDG_RUNTIME_DIR=str(work / "run"),
                        FLICK_STATE_DIR=str(state), FLICK_API_TOKEN=TOKEN)
        self.log = open(work / "flickd.log", "a")
        self.proc = subprocess.Popen([flickd, "--socket", self.socket, "--listen", "127.0.0.1:0", "--kernel", kernel,
                                      "--kernel-modules", modules, *args], env=self.env, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().strip()
        m = re.match(r"flickd: serving unix:\S+ http://127\.0\.0\.1:(\d+)$", line)
        if not m:
            raise RuntimeError(f"flickd did not start: {line!r}")
        self.port = int(m.group(1))

    def conn(self, timeout: float = BOOT + 60) -> UnixConnection:
        return UnixConnection(self.socket, timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        return code


class Suite:
    def __init__(self, flickd: str, flick: str, image: str, kernel: str, modules: str) -> None:
        self.flickd_bin, self.flick, self.image, self.kernel, self.modules = flickd, flick, image, kernel, modules
        self.work = Path(tempfile.mkdtemp(prefix="flickd-linux-"))
        # In the working directory: in the test host that is its 9p share, as for machine_linux_test.
        self.state = Path(tempfile.mkdtemp(prefix="state-", dir=Path.cwd()))
        self.failures: list[str] = []
        self.d = self.start_flickd()

    def start_flickd(self, *args: str) -> Flickd:
        return Flickd(self.work, self.state, self.kernel, self.modules, self.flickd_bin, *args)

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            print(f"  FAIL: {what}", flush=True)
        return ok

    # Two real clients: http.client on the Unix socket, curl on loopback TCP with the token.
    def call(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, object]:
        c = self.d.conn()
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, "/v1" + path, body=data, headers=h)
        r = c.getresponse()
        text = r.read()
        c.close()
        return r.status, (json.loads(text) if text else None)

    def curl(self, method: str, path: str, body=None) -> tuple[int, object]:
        argv = ["curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {TOKEN}", "-w", "\n%{http_code}",
                f"http://127.0.0.1:{self.d.port}/v1{path}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=BOOT + 60).stdout
        text, _, code = out.rpartition("\n")
        return int(code), (json.loads(text) if text else None)

    def ok(self, method: str, path: str, body=None, want: int = 200, curl: bool = False, headers=None):
        status, out = self.curl(method, path, body) if curl else self.call(method, path, body, headers)
        if not self.check(status == want, f"{method} {path}: {status} {out}, wanted {want}"):
            raise AssertionError(f"{method} {path}")
        return out

    def wait(self, app: str, mid: str, state: str, timeout: int = 60) -> dict:
        # A wait answers within 60 s at most (Fly's limit); a boot under emulation may take longer.
        deadline = time.monotonic() + BOOT
        while True:
            status, out = self.call("GET", f"/apps/{app}/machines/{mid}/wait?state={state}&timeout={timeout}")
            print(f"    wait {state}: {status}", flush=True)
            if status != 408 or time.monotonic() > deadline or "currently failed" in out.get("error", ""):
                break
        if not self.check(status == 200 and out["ok"] is True and out["state"] == state, f"wait {state}: {status} {out}"):
            _, m = self.call("GET", f"/apps/{app}/machines/{mid}")
            print(json.dumps(m.get("events") if isinstance(m, dict) else m, indent=1), flush=True)
        return out

    def config(self, memory_mb: int = 256, **extra) -> dict:
        return {"image": self.image, "guest": {"cpus": 1, "memory_mb": memory_mb}, "init": {"cmd": SLEEPER},
                "start_timeout": f"{BOOT}s", **extra}

    def check_machine(self, m: dict, name: str, app_state: tuple[str, ...]) -> None:
        self.check(re.fullmatch(r"[0-9a-f]{14}", m["id"]) is not None, f"id {m['id']}")
        self.check(m["name"] == name, f"name {m['name']} != {name}")
        self.check(m["state"] in app_state, f"state {m['state']} not in {app_state}")
        self.check(m["region"] == "local", f"region {m['region']}")
        self.check(ULID.match(m["instance_id"]) is not None, f"instance_id {m['instance_id']}")
        self.check(RFC3339.match(m["created_at"]) and RFC3339.match(m["updated_at"]) is not None,
                   f"times {m['created_at']} {m['updated_at']}")
        self.check(m["config"]["image"] == self.image, f"config.image {m['config']['image']}")
        self.check(m["config"]["init"]["cmd"] == SLEEPER, f"config.init {m['config']['init']}")
        ref = m["image_ref"]
        self.check(set(ref) >= {"registry", "repository", "tag", "digest"} and ref["digest"].startswith("sha256:"),
                   f"image_ref {ref}")
        for e in m["events"]:
            self.check(set(e) >= {"type", "status", "source", "timestamp"} and isinstance(e["timestamp"], int),
                       f"event {e}")

    def exec(self, app: str, mid: str, cmd: list[str]) -> dict:
        return self.ok("POST", f"/apps/{app}/machines/{mid}/exec", {"command": cmd, "timeout": 60}, curl=True)

    def lifecycle(self) -> None:
        app = "e2e"
        self.ok("POST", "/apps", {"app_name": app, "org_slug": "personal"}, want=201, curl=True)
        m = self.ok("POST", f"/apps/{app}/machines", {"name": "web", "region": "local", "config": self.config()},
                    curl=True)
        self.check_machine(m, "web", ("starting", "started"))
        mid = m["id"]
        path = f"/apps/{app}/machines/{mid}"
        self.wait(app, mid, "started")
        got = self.ok("GET", path)
        self.check_machine(got, "web", ("started",))
        self.check({"launch", "start"} <= {e["type"] for e in got["events"]}, f"events {got['events']}")

        x = self.exec(app, mid, ["sh", "-c", "echo out; echo err >&2; cat /flick/metadata.json; exit 3"])
        self.check(x["exit_code"] == 3 and x["stdout"].startswith("out\n") and x["stderr"] == "err\n",
                   f"exec {x}")
        meta = json.loads(x["stdout"][4:])
        self.check(meta["id"] == mid and meta["app"] == app and meta["instance_id"] == m["instance_id"],
                   f"metadata.json {meta}")
        procs = self.ok("GET", path + "/ps?sort_by=pid&order=desc")
        self.check(bool(procs) and procs[-1]["pid"] == 1 and all(a["pid"] > b["pid"] for a, b in zip(procs, procs[1:])),
                   f"ps, by pid descending: {procs}")
        self.check(any(p["command"] == " ".join(SLEEPER) and p["directory"] == "/" and p["rss"] > 0 for p in procs),
                   f"ps has no {SLEEPER}: {procs}")

        self.check(self.ok("POST", path + "/stop", {"signal": "SIGTERM", "timeout": "10s"}) == {"ok": True}, "stop")
        self.wait(app, mid, "stopped")
        stopped = self.ok("GET", path)
        self.check(stopped["state"] == "stopped", f"after stop: {stopped['state']}")
        exit_event = next((e for e in stopped["events"] if e["type"] == "exit"), {}).get("request", {})
        self.check(exit_event.get("exit_event", {}).get("requested_stop") is True, f"exit event {exit_event}")

        # Update memory on the stopped machine (skip_launch), then start: the guest has it.
        updated = self.ok("POST", path, {"config": self.config(memory_mb=384), "skip_launch": True})
        self.check(updated["config"]["guest"]["memory_mb"] == 384 and updated["instance_id"] != m["instance_id"]
                   and updated["state"] == "stopped", f"update {updated['state']} {updated['config']['guest']}")
        versions = self.ok("GET", path + "/versions")
        self.check(len(versions) == 2, f"versions {versions}")
        started = self.ok("POST", path + "/start")
        self.check(started == {"previous_state": "stopped", "migrated": False, "new_host": ""}, f"start {started}")
        self.wait(app, mid, "started")
        mem = self.exec(app, mid, ["sh", "-c", "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"])
        kib = int(mem["stdout"].strip() or 0)
        self.check(300 * 1024 < kib <= 384 * 1024, f"guest MemTotal {kib} kB after the update to 384 MB")

        # A clone, as flyctl makes one: the source's config into a new machine.
        source = self.ok("GET", path)
        clone = self.ok("POST", f"/apps/{app}/machines", {"name": "web-clone", "config": source["config"]})
        self.check_machine(clone, "web-clone", ("starting", "started"))
        self.wait(app, clone["id"], "started")
        self.ok("POST", f"/apps/{app}/machines/{clone['id']}/metadata/role", {"value": "replica"}, want=204)

        listed = self.ok("GET", f"/apps/{app}/machines?state=started")
        self.check(sorted(x["name"] for x in listed) == ["web", "web-clone"], f"list started {listed}")
        replicas = self.ok("GET", f"/apps/{app}/machines?metadata.role=replica&summary=true")
        self.check([x["id"] for x in replicas] == [clone["id"]], f"list by metadata {replicas}")
        self.check(self.ok("GET", f"/apps/{app}/machines?region=elsewhere") == [], "list other region")

        lease = self.ok("POST", path + "/lease?ttl=60", want=201)
        nonce = lease["data"]["nonce"]
        self.check(lease["status"] == "success" and len(nonce) > 8, f"lease {lease}")
        status, out = self.call("POST", path + "/stop", {})
        self.check(status == 409 and "lease currently held" in out.get("error", ""), f"stop without nonce: {status} {out}")
        self.check(self.ok("GET", path)["state"] == "started", "a refused stop changed the state")
        self.ok("POST", path + "/stop", {}, headers={"fly-machine-lease-nonce": nonce})
        self.wait(app, mid, "stopped")
        self.ok("DELETE", path + "/lease", headers={"fly-machine-lease-nonce": nonce})

        # A started machine is destroyed only with force.
        cpath = f"/apps/{app}/machines/{clone['id']}"
        status, out = self.call("DELETE", cpath)
        self.check(status == 412, f"destroy of a started machine without force: {status} {out}")
        self.ok("DELETE", cpath + "?force=true")
        self.ok("DELETE", path)
        self.wait(app, clone["id"], "destroyed")
        self.check(self.ok("GET", f"/apps/{app}/machines") == [], "machines left after destroy")
        gone = self.ok("GET", f"/apps/{app}/machines?include_deleted=true")
        self.check(sorted(x["state"] for x in gone) == ["destroyed", "destroyed"], f"include_deleted {gone}")

    def placement(self) -> None:
        # A flickd with room for two 256 MB guests.
        self.d.stop()
        self.d = self.start_flickd("--capacity-memory-mb", "600")
        app = "placed"
        self.ok("POST", "/apps", {"app_name": app}, want=201)
        ids = [self.ok("POST", f"/apps/{app}/machines", {"config": self.config()})["id"] for _ in range(2)]
        for mid in ids:
            self.wait(app, mid, "started")
        status, out = self.call("POST", f"/apps/{app}/machines", {"name": "third", "config": self.config()})
        self.check(status == 503 and out.get("status") == "insufficient_capacity", f"third: {status} {out}")
        self.check(len(self.ok("GET", f"/apps/{app}/machines")) == 2, "a refused create left a machine")
        self.ok("POST", f"/apps/{app}/machines/{ids[0]}/stop", {})
        self.wait(app, ids[0], "stopped")
        third = self.ok("POST", f"/apps/{app}/machines", {"name": "third", "config": self.config()})
        self.wait(app, third["id"], "started")
        status, out = self.call("POST", f"/apps/{app}/machines/{ids[0]}/start")
        self.check(status == 503 and out.get("status") == "insufficient_capacity", f"start beyond: {status} {out}")
        self.check(self.ok("GET", f"/apps/{app}/machines/{ids[0]}")["state"] == "stopped", "refused start moved it")
        for mid in ids[1:] + [third["id"]]:
            self.ok("DELETE", f"/apps/{app}/machines/{mid}?force=true")
        self.ok("DELETE", f"/apps/{app}/machines/{ids[0]}")
        self.d.stop()
        self.d = self.start_flickd()

    def crash_and_reconcile(self) -> None:
        app = "crash"
        self.ok("POST", "/apps", {"app_name": app}, want=201)
        always = self.ok("POST", f"/apps/{app}/machines",
                         {"name": "always", "config": self.config(restart={"policy": "always"})})["id"]
        plain = self.ok("POST", f"/apps/{app}/machines", {"name": "plain", "config": self.config()})["id"]
        waiter = self.ok("POST", f"/apps/{app}/machines", {"name": "waited", "config": self.config()})["id"]
        for mid in (always, plain, waiter):
            self.wait(app, mid, "started")
        pending = self.d.conn()
        pending.request("GET", f"/v1/apps/{app}/machines/{waiter}/wait?state=stopped&timeout=60")
        time.sleep(0.5)
        self.d.kill()
        try:
            pending.getresponse()
            self.check(False, "a wait answered by a killed flickd")
        except (http.client.HTTPException, OSError):
            pass
        pending.close()
        # The host goes down under two of them: their flick-vmm processes die unrecorded.
        for mid in (always, plain):
            subprocess.run(["pkill", "-KILL", "-f", f"machines/{mid}/"], check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                subprocess.run(["pgrep", "-f", f"machines/{mid}/"], capture_output=True).returncode == 0
                for mid in (always, plain)):
            time.sleep(0.2)

        self.d = self.start_flickd()
        # The same wait, sent again, answers once the machine stops.
        result: dict = {}

        def wait_again() -> None:
            result["r"] = self.call("GET", f"/apps/{app}/machines/{waiter}/wait?state=stopped&timeout=60")

        t = threading.Thread(target=wait_again)
        t.start()
        time.sleep(0.5)
        self.ok("POST", f"/apps/{app}/machines/{waiter}/stop", {})
        t.join(timeout=120)
        self.check(result.get("r", (0, {}))[0] == 200 and result["r"][1]["state"] == "stopped", f"wait again {result}")

        p = self.ok("GET", f"/apps/{app}/machines/{plain}")
        exit_event = next((e for e in p["events"] if e["type"] == "exit"), {}).get("request", {}).get("exit_event", {})
        self.check(p["state"] == "stopped" and exit_event.get("run_lost") is True and "killed" in exit_event.get("error", ""),
                   f"plain after the crash: {p['state']} {exit_event}")
        self.wait(app, always, "started")
        a = self.ok("GET", f"/apps/{app}/machines/{always}")
        self.check(a["state"] == "started", f"always after the crash: {a['state']}")
        x = self.exec(app, always, ["echo", "back"])
        self.check(x["stdout"] == "back\n", f"exec after the restart {x}")
        status = subprocess.run([self.flick, "daemon", "status", "--json"], env=self.d.env, capture_output=True,
                                text=True)
        st = json.loads(status.stdout or "{}")
        self.check(status.returncode == 0 and st.get("running") and st.get("machines", {}).get("started") == 1,
                   f"flick daemon status: {status.returncode} {st}")
        self.ok("DELETE", f"/apps/{app}?force=true", want=202)

    def run(self) -> int:
        only = [p for p in os.environ.get("FLICK_TEST_ONLY", "").split(",") if p]
        for case in (self.lifecycle, self.placement, self.crash_and_reconcile):
            if only and not any(p.lower() in case.__name__ for p in only):
                continue
            print(f"=== {case.__name__}", flush=True)
            t0 = time.monotonic()
            try:
                case()
            except AssertionError as e:
                self.failures.append(f"{case.__name__} stopped at {e}")
            print(f"    {time.monotonic() - t0:.1f} s", flush=True)
        code = self.d.stop()
        self.check(code == 0, f"flickd exited {code}")
        for f in self.failures:
            print(f"FAIL: {f}", flush=True)
        if self.failures:
            print((self.work / "flickd.log").read_text(), flush=True)
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        print("PASS" if not self.failures else f"{len(self.failures)} failure(s)", flush=True)
        return 0 if not self.failures else 1


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        return Suite(*argv[2:7]).run()
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    flickd, flick = (str(Path(a).resolve()) for a in argv[1:3])
    kernel = kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    work = Path.cwd() / "flickd_linux_test.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = subprocess.run([sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(work / "layout")],
                           check=True, capture_output=True, text=True).stdout.strip()
    modules = kernel.root / "lib" / "modules" / kernel.release
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flickd, flick, image, str(kernel.vmlinuz),
           str(modules)]
    if testhost.needed():
        return testhost.run(cmd, timeout=1500, memory_mib=3072, smp=1)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
