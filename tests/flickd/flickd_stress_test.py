#!/usr/bin/env python3
"""flickd under 32 concurrent clients with real guests, and at most 4 of them running.

Inside the test host (or directly where /dev/kvm runs Linux), one flickd with room for four
1-CPU guests (--capacity-cpus 4). 32 client threads, each on its own http.client connections
over the Unix socket, make a seeded random mix of calls for FLICK_STRESS_SECONDS (default 120):
skip_launch creates, starts (a start beyond capacity gets 503 insufficient_capacity), waits,
stops, config updates (each client's own env generation and metadata), metadata keys each
client owns on eight shared machines, leases (a call without the nonce refused with 409, with
it accepted; two clients never hold one machine's lease at once), lists, force deletes.

Fails on any 5xx but the documented 503 insufficient_capacity, any status the client did not
expect from what it knows of its machines, a body that does not validate against
tools/flickd/openapi.json (the first 25 of each call and status are checked), and at the end on:
  - a lost update: a client's last write (config generation, metadata) differs from GET;
  - a leaked or ghost machine: the listed machines differ from what the clients made and kept;
  - more than 4 machines starting, started or stopping at once (sampled all along);
  - a flick-vmm process left once everything is deleted.

  flickd_stress_test.py FLICKD      (flick-vmm beside it)
  FLICK_STRESS_SECONDS  how long the clients run (default 120; a few seconds for a quick try)
  FLICK_STRESS_SEED     the random seed (default: a new one, printed; give it to replay)
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import openapi_check  # noqa: E402
from flickd_linux_test import Flickd, UnixConnection  # noqa: E402
import flickd_linux_test  # noqa: E402

CLIENTS = 32
SECONDS = float(os.environ.get("FLICK_STRESS_SECONDS", "120"))
CAPACITY_CPUS = 4
SHARED = 8         # machines every client writes its own metadata key on
OWN_MAX = 2        # machines a client keeps at once
CALL_TIMEOUT = 240  # a force delete or stop of a guest under emulation, with 31 other clients
APP = "stress"
# Leases outlive any call under emulation (p99 ~10 s): one gone early is a bug, not an expiry.
LEASE_TTL = 600
VALIDATE_EACH = 25  # responses of each call and status checked against openapi.json
SLEEPER = ["sleep", "3600"]
RUNNING = ("starting", "started", "stopping")


def capacity_error(status: int, body) -> bool:
    return status == 503 and isinstance(body, dict) and body.get("status") == "insufficient_capacity"


@dataclass
class Response:
    client: int
    op: str
    method: str
    path: str
    status: int
    content_type: str
    body: bytes
    seconds: float


class Record:
    """Every response, and every problem found, from all threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.responses: list[Response] = []
        self.problems: list[str] = []

    def problem(self, what: str) -> None:
        with self.lock:
            self.problems.append(what)
        print(f"  PROBLEM: {what}", flush=True)


class Api:
    """One client's calls: a fresh connection each, every response recorded and checked."""

    def __init__(self, socket_path: str, record: Record, client: int) -> None:
        self.socket_path, self.record, self.client = socket_path, record, client

    def call(self, op: str, method: str, path: str, body=None, want: tuple[int, ...] = (200,),
             nonce: str | None = None, capacity: bool = False) -> tuple[int, object]:
        """(status, decoded body). `capacity`: a 503 insufficient_capacity is expected too."""
        headers = {"fly-machine-lease-nonce": nonce} if nonce else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = UnixConnection(self.socket_path, CALL_TIMEOUT)
        t0 = time.monotonic()
        try:
            conn.request(method, "/v1" + path, body=data, headers=headers)
            r = conn.getresponse()
            text = r.read()
            ctype = r.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as e:
            self.record.problem(f"client {self.client} {op}: {method} {path}: {type(e).__name__}: {e}")
            return 0, None
        finally:
            conn.close()
        with self.record.lock:
            self.record.responses.append(Response(self.client, op, method, "/v1" + path, r.status, ctype, text,
                                                  time.monotonic() - t0))
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = None  # openapi_check names it
        if r.status >= 500 and not capacity_error(r.status, value):
            self.record.problem(f"client {self.client} {op}: {method} {path} -> {r.status} {text[:300]!r}")
        elif r.status not in want and not (capacity and capacity_error(r.status, value)):
            self.record.problem(f"client {self.client} {op}: {method} {path} -> {r.status} {text[:300]!r}, "
                                f"wanted {want}")
        return r.status, value


@dataclass
class Owned:
    """What a client knows of a machine only it changes."""
    id: str
    name: str
    gen: int = 0
    metadata: dict[str, str] = field(default_factory=dict)


class LeaseBook:
    """Who holds each shared machine's lease, as the clients were told: never two at once."""

    def __init__(self, record: Record) -> None:
        self.lock = threading.Lock()
        self.holders: dict[str, int] = {}
        self.record = record
        self.granted = 0

    def granted_to(self, machine: str, client: int) -> None:
        with self.lock:
            self.granted += 1
            if machine in self.holders:
                self.record.problem(f"lease of {machine} granted to client {client} while client "
                                    f"{self.holders[machine]} holds it")
            self.holders[machine] = client

    def releasing(self, machine: str) -> None:  # before the release is sent
        with self.lock:
            self.holders.pop(machine, None)


class Client(threading.Thread):
    def __init__(self, n: int, socket_path: str, record: Record, seed: int, image: str, shared: list[str],
                 leases: LeaseBook, deadline: float) -> None:
        super().__init__(name=f"client-{n}", daemon=True)
        self.n, self.record, self.image, self.shared, self.leases, self.deadline = (
            n, record, image, shared, leases, deadline)
        self.api = Api(socket_path, record, n)
        self.rng = random.Random(seed * 1000 + n)
        self.own: dict[str, Owned] = {}
        self.shared_meta: dict[str, str | None] = {}  # this client's key on each shared machine
        self.made = 0
        self.writes = 0
        self.ops: collections.Counter = collections.Counter()

    @property
    def key(self) -> str:
        return f"c{self.n}"

    def config(self, m: Owned) -> dict:
        return {"image": self.image, "guest": {"cpus": 1, "memory_mb": 256}, "init": {"cmd": SLEEPER},
                "env": {"OWNER": self.key, "GEN": str(m.gen)}, "metadata": dict(m.metadata),
                "start_timeout": "300s", "stop_config": {"timeout": "10s"}}

    def path(self, m: Owned | str, rest: str = "") -> str:
        return f"/apps/{APP}/machines/{m if isinstance(m, str) else m.id}{rest}"

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.record.problem(f"client {self.n}: {what}")
        return ok

    def run(self) -> None:
        ops = [(self.create, 3), (self.get, 3), (self.update, 3), (self.set_metadata, 2), (self.start_machine, 4),
               (self.wait, 3), (self.stop_machine, 3), (self.lease_own, 2), (self.delete, 1), (self.shared_metadata, 5),
               (self.lease_shared, 2), (self.list, 2)]
        funcs, weights = zip(*ops)
        while time.monotonic() < self.deadline:
            op = self.rng.choices(funcs, weights)[0]
            self.ops[op.__name__] += 1
            try:
                op()
            except Exception as e:  # a bug in the test, or a body of the wrong shape
                self.record.problem(f"client {self.n} {op.__name__}: {type(e).__name__}: {e}")
            time.sleep(self.rng.uniform(0.1, 1))  # the guests need the test host's CPUs too

    def pick(self) -> Owned | None:
        return self.rng.choice(list(self.own.values())) if self.own else None

    def state(self, m: Owned) -> str | None:
        status, got = self.api.call("get", "GET", self.path(m))
        return got["state"] if status == 200 else None

    def create(self) -> None:
        if len(self.own) >= OWN_MAX:
            return self.delete()
        m = Owned("", f"{self.key}-{self.made}", metadata={"owner": self.key})
        self.made += 1
        status, got = self.api.call("create", "POST", f"/apps/{APP}/machines",
                                    {"name": m.name, "config": self.config(m), "skip_launch": True})
        if status == 200:
            m.id = got["id"]
            self.own[m.id] = m
            self.check(got["state"] == "created" and got["name"] == m.name and got["config"]["env"]["GEN"] == "0",
                       f"created {got['state']} {got['name']} {got['config'].get('env')}")

    def get(self) -> None:
        m = self.pick()
        if not m:
            return
        status, got = self.api.call("get", "GET", self.path(m))
        if status == 200:  # read your writes
            self.check(got["config"]["env"]["GEN"] == str(m.gen) and got["config"].get("metadata", {}) == m.metadata,
                       f"GET {m.id}: env {got['config']['env']} metadata {got['config'].get('metadata')}, "
                       f"wrote GEN {m.gen} metadata {m.metadata}")

    def update(self, m: Owned | None = None, nonce: str | None = None) -> None:
        m = m or self.pick()
        if not m:
            return
        state = self.state(m)
        if state not in ("created", "stopped", "failed", "started"):
            return  # starting or stopping: an update would wait for it
        m.gen += 1
        status, got = self.api.call("update", "POST", self.path(m), {"config": self.config(m), "skip_launch": True},
                                    nonce=nonce, capacity=state == "started")
        if status != 200:
            m.gen -= 1
            return
        self.writes += 1
        self.check(got["config"]["env"]["GEN"] == str(m.gen) and got["state"] not in RUNNING,
                   f"updated {m.id}: {got['state']} env {got['config']['env']}")

    def set_metadata(self) -> None:
        m = self.pick()
        if not m:
            return
        key = f"k{self.rng.randrange(3)}"
        if key in m.metadata and self.rng.random() < 0.4:
            if self.api.call("metadata", "DELETE", self.path(m, f"/metadata/{key}"), want=(204,))[0] == 204:
                del m.metadata[key]
            return
        value = f"{self.n}-{self.rng.randrange(10**6)}"
        if self.api.call("metadata", "POST", self.path(m, f"/metadata/{key}"), {"value": value},
                         want=(204,))[0] == 204:
            m.metadata[key] = value
            self.writes += 1

    def start_machine(self) -> None:
        m = self.pick()
        if not m or self.state(m) not in ("created", "stopped", "failed"):
            return
        status, got = self.api.call("start", "POST", self.path(m, "/start"), capacity=True)
        if status == 200:
            self.check(got["previous_state"] in ("created", "stopped", "failed"), f"start {got}")

    def wait(self) -> None:
        m = self.pick()
        if not m:
            return
        want = self.rng.choice(["started", "stopped", "started,stopped"])
        timeout = self.rng.randint(1, 5)
        status, got = self.api.call("wait", "GET", self.path(m, f"/wait?state={want}&timeout={timeout}"),
                                    want=(200, 408))
        if status == 200:
            self.check(got["ok"] is True and got["state"] in want.split(","), f"wait {want}: {got}")

    def stop_machine(self) -> None:
        m = self.pick()
        if m and self.state(m) in ("created", "stopped", "started"):
            self.api.call("stop", "POST", self.path(m, "/stop"), {"timeout": "10s"})

    def delete(self) -> None:
        m = self.pick()
        if m and self.api.call("delete", "DELETE", self.path(m, "?force=true"))[0] == 200:
            del self.own[m.id]

    def lease_own(self) -> None:
        m = self.pick()
        if not m:
            return
        status, lease = self.api.call("lease", "POST", self.path(m, "/lease"), {"ttl": LEASE_TTL, "description": self.key},
                                      want=(201,))
        if status != 201:
            return
        nonce = lease["data"]["nonce"]
        if self.rng.random() < 0.5:  # refused without the nonce, and nothing changes
            self.api.call("lease", "POST", self.path(m), {"config": self.config(m), "skip_launch": True}, want=(409,))
            self.update(m, nonce)
        else:
            self.api.call("lease", "POST", self.path(m, "/cordon"), want=(409,))
            self.api.call("lease", "POST", self.path(m, "/cordon"), nonce=nonce)
            self.api.call("lease", "POST", self.path(m, "/uncordon"), nonce=nonce)
        status, shown = self.api.call("lease", "GET", self.path(m, "/lease"))
        if status == 200:
            self.check(shown["data"]["nonce"] == nonce, f"lease of {m.id} shows {shown}, acquired {nonce}")
        self.api.call("lease", "DELETE", self.path(m, "/lease"), nonce=nonce)

    def shared_metadata(self) -> None:
        mid = self.rng.choice(self.shared)
        if self.rng.random() < 0.2:
            if self.api.call("shared", "DELETE", self.path(mid, f"/metadata/{self.key}"), want=(204,))[0] == 204:
                self.shared_meta[mid] = None
            return
        value = f"{self.n}-{self.rng.randrange(10**6)}"
        if self.api.call("shared", "POST", self.path(mid, f"/metadata/{self.key}"), {"value": value},
                         want=(204,))[0] == 204:
            self.shared_meta[mid] = value
            self.writes += 1

    def lease_shared(self) -> None:
        mid = self.rng.choice(self.shared)
        status, lease = self.api.call("shared-lease", "POST", self.path(mid, "/lease"), {"ttl": LEASE_TTL}, want=(201, 409))
        if status != 201:
            return
        nonce = lease["data"]["nonce"]
        self.leases.granted_to(mid, self.n)
        self.api.call("shared-lease", "POST", self.path(mid, "/cordon"), nonce=nonce)
        self.api.call("shared-lease", "POST", self.path(mid, "/cordon"), want=(409,))
        self.api.call("shared-lease", "POST", self.path(mid, "/uncordon"), nonce=nonce)
        self.leases.releasing(mid)
        self.api.call("shared-lease", "DELETE", self.path(mid, "/lease"), nonce=nonce)

    def list(self) -> None:
        status, got = self.api.call("list", "GET", f"/apps/{APP}/machines?metadata.owner={self.key}")
        if status == 200:  # only this client makes and destroys its machines
            self.check(sorted(x["id"] for x in got) == sorted(self.own), f"listed {[x['id'] for x in got]}, "
                       f"own {sorted(self.own)}")


class Monitor(threading.Thread):
    """Samples how many machines hold a place (and how many flick-vmm processes run)."""

    def __init__(self, socket_path: str, record: Record) -> None:
        super().__init__(name="monitor", daemon=True)
        self.api = Api(socket_path, record, -1)
        self.record = record
        self.done = threading.Event()
        self.samples = 0
        self.max_running = 0
        self.max_started = 0
        self.max_processes = 0

    def run(self) -> None:
        while not self.done.wait(0.5):
            status, got = self.api.call("monitor", "GET", f"/apps/{APP}/machines?state={','.join(RUNNING)}")
            if status != 200:
                continue
            self.samples += 1
            running = len(got)
            self.max_running = max(self.max_running, running)
            self.max_started = max(self.max_started, sum(m["state"] == "started" for m in got))
            self.max_processes = max(self.max_processes, len(vmm_processes()))
            if running > CAPACITY_CPUS:
                self.record.problem(f"{running} machines hold a place at once: "
                                    f"{[(m['id'], m['state']) for m in got]}")


def vmm_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-x", "flick-vmm"], capture_output=True, text=True).stdout
    return out.split()


class Stress:
    def __init__(self, flickd: str, image: str, kernel: str, modules: str) -> None:
        self.image = image
        self.work = Path(tempfile.mkdtemp(prefix="flickd-stress-"))
        # On /tmp (tmpfs in the test host): the store's writes on the 9p share would be what is measured.
        self.state = self.work / "state"
        self.d = Flickd(self.work, self.state, kernel, modules, flickd, "--capacity-cpus", str(CAPACITY_CPUS))
        self.record = Record()
        self.api = Api(self.d.socket, self.record, -1)

    def run(self, seed: int) -> int:
        t0 = time.monotonic()
        self.api.call("setup", "POST", "/apps", {"app_name": APP, "org_slug": "personal"}, want=(201,))
        shared_config = {"image": self.image, "guest": {"cpus": 1, "memory_mb": 256}, "init": {"cmd": SLEEPER}}
        shared = [self.api.call("setup", "POST", f"/apps/{APP}/machines",
                                {"name": f"shared-{i}", "config": shared_config, "skip_launch": True})[1]["id"]
                  for i in range(SHARED)]
        print(f"setup {time.monotonic() - t0:.1f} s; {CLIENTS} clients for {SECONDS:g} s", flush=True)
        leases = LeaseBook(self.record)
        monitor = Monitor(self.d.socket, self.record)
        deadline = time.monotonic() + SECONDS
        clients = [Client(n, self.d.socket, self.record, seed, self.image, shared, leases, deadline)
                   for n in range(CLIENTS)]
        monitor.start()
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=SECONDS + 4 * CALL_TIMEOUT)
            if c.is_alive():
                self.record.problem(f"client {c.n} still busy long after the end")
        monitor.done.set()
        monitor.join()
        print(f"clients done {time.monotonic() - t0:.1f} s", flush=True)

        self.check_final(clients, shared)
        self.delete_all(clients, shared)
        self.check_responses()
        self.summary(clients, monitor, leases)
        code = self.d.stop()
        if code != 0:
            self.record.problem(f"flickd exited {code}")
        problems = self.record.problems
        if problems:
            print((self.work / "flickd.log").read_text()[-20000:], flush=True)
            for p in problems[:100]:
                print(f"FAIL: {p}", flush=True)
            print(f"{len(problems)} problem(s); replay with FLICK_STRESS_SEED={seed}", flush=True)
        else:
            print(f"PASS in {time.monotonic() - t0:.1f} s (FLICK_STRESS_SEED={seed})", flush=True)
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        return 1 if problems else 0

    def check_final(self, clients: list[Client], shared: list[str]) -> None:
        """One list, read once every client is done: exactly the machines the clients kept (no
        leak, no ghost), each with the config and metadata its writers last wrote (no lost update)."""
        status, got = self.api.call("final", "GET", f"/apps/{APP}/machines")
        if status != 200:
            return
        listed = {m["id"]: m["config"] for m in got}
        believed = set(shared).union(*(set(c.own) for c in clients))
        if set(listed) != believed:
            self.record.problem(f"listed but not kept: {sorted(set(listed) - believed)}; "
                                f"kept but not listed: {sorted(believed - set(listed))}")
        for c in clients:
            for m in c.own.values():
                config = listed.get(m.id)
                if config is not None:
                    c.check(config["env"]["GEN"] == str(m.gen) and config.get("metadata", {}) == m.metadata,
                            f"lost update on {m.id}: env {config['env']} metadata {config.get('metadata')}, "
                            f"last written GEN {m.gen} metadata {m.metadata}")
            for mid, value in c.shared_meta.items():
                if mid in listed:
                    got_value = listed[mid].get("metadata", {}).get(c.key)
                    c.check(got_value == value, f"lost update on shared {mid}: {c.key}={got_value!r}, "
                                                f"last written {value!r}")

    def delete_all(self, clients: list[Client], shared: list[str]) -> None:
        ids = list(shared) + [mid for c in clients for mid in c.own]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda mid: self.api.call("cleanup", "DELETE", f"/apps/{APP}/machines/{mid}?force=true"),
                          ids))
        status, got = self.api.call("cleanup", "GET", f"/apps/{APP}/machines")
        if status == 200 and got:
            self.record.problem(f"machines left after deleting all: {[(m['id'], m['state']) for m in got]}")
        deadline = time.monotonic() + 60
        while vmm_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        if left := vmm_processes():
            self.record.problem(f"flick-vmm processes left after every machine is deleted: {left}")

    def check_responses(self) -> None:
        """Bodies validate against flickd's OpenAPI document: VALIDATE_EACH of every call and status
        (a schema check costs ~40 ms under the test host's emulation; the other bodies were read
        by the clients)."""
        t0 = time.monotonic()
        seen: collections.Counter = collections.Counter()
        for r in self.record.responses:
            kind = (r.method, openapi_check.spec_operation(r.method, r.path)[0], r.status)
            seen[kind] += 1
            if seen[kind] > VALIDATE_EACH:
                continue
            for p in openapi_check.response_problems(r.method, r.path, r.status, r.content_type, r.body):
                self.record.problem(f"client {r.client} {r.op}: {p}")
        checked = sum(min(n, VALIDATE_EACH) for n in seen.values())
        print(f"{checked} of {len(self.record.responses)} responses ({len(seen)} kinds) validated against "
              f"openapi.json in {time.monotonic() - t0:.1f} s", flush=True)

    def summary(self, clients: list[Client], monitor: Monitor, leases: LeaseBook) -> None:
        by = collections.Counter((r.op, r.status) for r in self.record.responses)
        print("responses by call and status: " + ", ".join(f"{op} {s}: {n}" for (op, s), n in sorted(by.items())))
        took = sorted(r.seconds for r in self.record.responses)
        if took:
            print(f"latency p50 {took[len(took) // 2]:.3f} s, p99 {took[len(took) * 99 // 100]:.3f} s, "
                  f"max {took[-1]:.1f} s")
        starts = by[("start", 200)]
        refused = sum(n for (op, s), n in by.items() if s == 503)
        print(f"starts {starts}, capacity refusals {refused}, writes {sum(c.writes for c in clients)}, "
              f"shared leases granted {leases.granted}; monitor: {monitor.samples} samples, at most "
              f"{monitor.max_running} holding a place ({monitor.max_started} started), "
              f"{monitor.max_processes} flick-vmm processes", flush=True)
        # Proof that the run did what it claims: guests held places, and placement refused some.
        # (Whether a guest gets as far as `started` depends on how loaded the test host is.)
        if SECONDS >= 60 and (monitor.max_running < 1 or refused < 1 or monitor.samples < 1):
            self.record.problem(f"the run did not exercise placement: {starts} starts, {refused} refusals, "
                                f"at most {monitor.max_running} holding a place, {monitor.samples} samples")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--inside":
        seed = int(os.environ.get("FLICK_STRESS_SEED") or random.SystemRandom().randrange(10**9))
        print(f"FLICK_STRESS_SEED={seed}", flush=True)
        return Stress(*argv[2:6]).run(seed)
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    flickd = str(Path(argv[1]).resolve())
    kernel = flickd_linux_test.kernel_cache.fetch_kernel("linux-image-cloud-amd64")
    work = Path.cwd() / "flickd_stress_test.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = subprocess.run([sys.executable, str(flickd_linux_test.ROOT / "scripts" / "busybox-image.py"),
                            str(work / "layout")], check=True, capture_output=True, text=True).stdout.strip()
    modules = kernel.root / "lib" / "modules" / kernel.release
    cmd = [sys.executable, str(Path(__file__).resolve()), "--inside", flickd, image, str(kernel.vmlinuz), str(modules)]
    if flickd_linux_test.testhost.needed():
        return flickd_linux_test.testhost.run(cmd, timeout=SECONDS + 900, memory_mib=4096, smp=2)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
