#!/usr/bin/env python3
"""A machine's lifecycle through separate `flick machine ...` processes, each exiting once its
step is done: create, start, list (from another process), stop, status, destroy; and the
errors on the way (a name taken, a destroy without --force, a signal to a machine that has not
started, a wait that times out).

The kernel is the freestanding test guest in mode=hang: it boots but never reports `started`,
so a started machine stays `starting` until it is stopped. Needs KVM (runs in the test host
where this machine has none).

  machine_cli_kvm_test.py FLICK TESTGUEST_PVH
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else "flick"
KERNEL = sys.argv.pop(1) if len(sys.argv) > 1 else ""
ROOT = Path(__file__).resolve().parent.parent.parent


class MachineCliLifecycle(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flick-machine-cli-"))
        self.state = self.dir / "state"
        self.env = dict(os.environ, FLICK_HOME=str(self.dir / "cache"), XDG_RUNTIME_DIR=str(self.dir / "run"))
        self.env.pop("FLICK_STATE_DIR", None)
        self.env.pop("FLICK_APP", None)
        layout = self.dir / "layout"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(layout)], check=True,
                       stdout=subprocess.DEVNULL)
        self.image = f"oci:{layout}:latest"

    def tearDown(self) -> None:
        # Runs outlive the processes that started them: end every one, so no flick-vmm remains.
        listed = self.flick("machine", "list", "--json")
        if listed.returncode == 0:
            for m in json.loads(listed.stdout):
                self.flick("machine", "destroy", "--force", m["id"])
        shutil.rmtree(self.dir, ignore_errors=True)

    def flick(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [FLICK, *args, "--state-dir", str(self.state)]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        print(f"$ flick {' '.join(args)}  -> {p.returncode} ({time.monotonic() - t0:.1f} s)", flush=True)
        return p

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        p = self.flick(*args)
        self.assertEqual(p.returncode, 0, f"flick {' '.join(args)}: {p.stderr}")
        self.assertEqual(p.stderr, "")
        return p

    def failed(self, *args: str, says: str) -> None:
        p = self.flick(*args)
        self.assertEqual(p.returncode, 1, f"flick {' '.join(args)}: {p.stdout} {p.stderr}")
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("flick: "), p.stderr)
        self.assertIn(says, lines[0])

    def listed(self) -> list[dict]:
        return json.loads(self.ok("machine", "list", "--json").stdout)

    def test_lifecycle_across_processes(self):
        t0 = time.monotonic()
        create = ["machine", "create", self.image, "--kernel", KERNEL, "--kernel-arg", "testguest",
                  "--kernel-arg", "mode=hang", "--start-timeout", "300"]
        mid = self.ok(*create, "--name", "probe").stdout.strip()
        self.assertRegex(mid, r"^[0-9a-f]{14}$")
        [m] = self.listed()
        self.assertEqual((m["id"], m["name"], m["state"], m["config"]["image"]), (mid, "probe", "created", self.image))
        self.assertEqual(m["config"]["guest"]["kernel_args"], ["testguest", "mode=hang"])
        self.assertRegex(m["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

        # A name taken: one line naming it, and nothing made.
        self.failed(*create, "--name", "probe", says="machine name probe is taken in app default")
        self.assertEqual(len(self.listed()), 1)

        self.assertIn(mid, self.ok("machine", "start", mid).stdout)
        [m] = self.listed()  # another process sees the run the last one started
        self.assertEqual(m["state"], "starting")
        table = self.ok("machine", "list").stdout.splitlines()
        self.assertEqual(table[0].split(), ["ID", "NAME", "STATE", "IMAGE", "CREATED"])
        self.assertEqual(table[1].split()[:3], [mid, "probe", "starting"])

        self.failed("machine", "start", mid, says="is starting")
        self.failed("machine", "destroy", mid, says="with force")
        self.failed("machine", "signal", mid, "SIGTERM", says="its program is not running")
        self.failed("machine", "wait", "probe", "--state", "started", "--timeout", "1s", says="still starting")

        follower = subprocess.Popen([FLICK, "machine", "logs", "-f", mid, "--state-dir", str(self.state)], env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.assertIn("stopped", self.ok("machine", "stop", "probe").stdout)
        try:  # `logs -f` ends once the machine has stopped
            _, err = follower.communicate(timeout=30)
        finally:
            follower.kill()
        self.assertEqual((follower.returncode, err), (0, ""))
        [m] = self.listed()
        self.assertEqual(m["state"], "stopped")
        self.ok("machine", "wait", mid, "--state", "stopped", "--timeout", "5")
        self.ok("machine", "logs", mid)

        status = json.loads(self.ok("machine", "status", mid, "--json").stdout)
        self.assertEqual(status["state"], "stopped")
        types = [e["type"] for e in status["events"]]  # newest first, as Fly's
        self.assertEqual(types, ["exit", "stop", "launch"])
        exits = [e for e in status["events"] if e["type"] == "exit"]
        self.assertTrue(exits[0]["request"]["exit_event"]["requested_stop"], exits)
        human = self.ok("machine", "status", mid).stdout
        self.assertIn("State:      stopped", human)
        self.assertRegex(human, r"(?m)^stopped\s+exit\s")

        self.assertIn("destroyed", self.ok("machine", "destroy", mid).stdout)
        self.assertEqual(self.listed(), [])
        self.assertEqual(json.loads(self.ok("machine", "status", mid, "--json").stdout)["state"], "destroyed")
        self.failed("machine", "status", "probe", says="machine probe not found")
        print(f"lifecycle took {time.monotonic() - t0:.1f} s", flush=True)  # for the log; speed is bench/'s


if __name__ == "__main__":
    unittest.main(verbosity=2)
