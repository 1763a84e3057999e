#!/usr/bin/env python3
"""The `flick` command line: --help on every command, the version, usage errors (exit 2: one
line naming the command and what is wrong, then a pointer to --help), where the command of
`flick machine run` begins, and the commands over the store that need no VM: apps, volumes,
machine lookups (a flick error: exit 1 and one line "flick: ..."). Starts no VM, so it needs
no KVM.

  flick_cli_test.py FLICK
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

FLICK = sys.argv.pop(1) if len(sys.argv) > 1 else "flick"
HINT = "Run with --help for more information."


class FlickTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flick-cli-"))
        self.env = dict(os.environ, FLICK_HOME=str(self.dir / "cache"), FLICK_STATE_DIR=str(self.dir / "state"),
                        XDG_RUNTIME_DIR=str(self.dir / "run"), FLICK_KVM_DEVICE="/nonexistent/kvm")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def flick(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([FLICK, *args], capture_output=True, text=True, env=self.env, timeout=60,
                              stdin=subprocess.DEVNULL)


MACHINE_COMMANDS = ["run", "create", "start", "stop", "restart", "signal", "wait", "destroy", "list", "status", "logs",
                    "ps", "update", "clone", "metadata", "cordon", "uncordon", "lease"]


class Help(FlickTest):
    COMMANDS = [[], ["image"], ["image", "pull"], ["image", "ls"], ["image", "rm"], ["image", "rootfs"], ["image", "prune"],
                ["image", "login"], ["image", "logout"],
                ["machine"], *[["machine", c] for c in MACHINE_COMMANDS], ["vm"], ["vm", "run"], ["version"],
                *[["machine", "metadata", c] for c in ("get", "set", "delete")],
                *[["machine", "lease", c] for c in ("acquire", "show", "release")],
                ["app"], ["app", "create"], ["app", "list"], ["app", "destroy"],
                ["volume"], ["volume", "create"], ["volume", "list"], ["volume", "destroy"]]

    def test_every_command_has_help(self):
        for command in self.COMMANDS:
            for flag in ("--help", "-h"):
                with self.subTest(command=command, flag=flag):
                    p = self.flick(*command, flag)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(p.stderr, "")
                    self.assertIn("Usage: " + " ".join(["flick", *command]), p.stdout)

    def test_groups_list_their_commands(self):
        for command, subcommands in (([], ["app", "image", "machine", "vm", "volume", "version"]),
                                     (["image"], ["pull", "ls", "rm", "rootfs", "prune", "login", "logout"]),
                                     (["machine"], MACHINE_COMMANDS), (["vm"], ["run"]),
                                     (["machine", "metadata"], ["get", "set", "delete"]),
                                     (["machine", "lease"], ["acquire", "show", "release"]),
                                     (["app"], ["create", "list", "destroy"]),
                                     (["volume"], ["create", "list", "destroy"])):
            out = self.flick(*command, "--help").stdout
            for sub in subcommands:
                self.assertRegex(out, rf"(?m)^  {sub}[ ,]", command)

    def test_exit_codes_are_documented(self):
        out = self.flick("--help").stdout
        self.assertIn("Exit status: 0 done; 1 flick failed", out)
        self.assertIn("2 a bad command line", out)

    MACHINE_OPTIONS = ["--cpus", "--memory", "-e,--env", "-v,--volume", "--user", "--workdir", "--entrypoint",
                       "--restart", "--stop-signal", "--stop-timeout", "--start-timeout", "--rm", "--no-network",
                       "--name", "-a,--app", "--kernel", "--kernel-modules", "--kernel-arg", "--state-dir", "IMAGE", "--rootfs-size",
                       "CMD", "--config", "--metadata", "--pull", "-p,--port", "--autostart", "--autostop"]

    def test_help_names_every_option(self):
        MACHINE_OPTIONS = self.MACHINE_OPTIONS
        options = {
            ("machine", "run"): MACHINE_OPTIONS + ["--timings", "--kvm-device"],
            ("machine", "create"): MACHINE_OPTIONS + ["--json"],
            ("machine", "start"): ["ID", "-a,--app", "--state-dir", "--kvm-device", "--lease-nonce"],
            ("machine", "stop"): ["ID", "-s,--signal", "--timeout", "-a,--app", "--state-dir", "--lease-nonce"],
            ("machine", "restart"): ["ID", "-s,--signal", "--timeout", "--kvm-device", "--lease-nonce"],
            ("machine", "signal"): ["ID", "SIG", "-a,--app", "--lease-nonce"],
            ("machine", "update"): ["ID", "--config", "--image", "--pull", "--cpus", "--memory", "--rootfs-size", "-e,--env", "--metadata",
                                    "--restart", "--cmd", "--entrypoint", "--user", "--workdir", "--skip-start",
                                    "--json", "--lease-nonce", "-a,--app", "-p,--port", "--autostart", "--autostop"],
            ("machine", "clone"): ["ID", "--name", "--skip-start", "--json", "-a,--app"],
            ("machine", "cordon"): ["ID", "--lease-nonce", "-a,--app"],
            ("machine", "uncordon"): ["ID", "--lease-nonce", "-a,--app"],
            ("machine", "metadata", "set"): ["ID", "KEY", "VALUE", "-a,--app"],
            ("machine", "lease", "acquire"): ["ID", "--ttl", "--description", "--lease-nonce", "--json"],
            ("machine", "lease", "release"): ["ID", "NONCE", "--lease-nonce"],
            ("machine", "wait"): ["ID", "--state", "--timeout", "-a,--app"],
            ("machine", "destroy"): ["ID", "-f,--force", "-a,--app", "--state-dir", "--lease-nonce"],
            ("machine", "list"): ["-a,--app", "--state", "--json", "--state-dir"],
            ("machine", "status"): ["ID", "-a,--app", "--json", "--state-dir"],
            ("machine", "logs"): ["ID", "-f,--follow", "-a,--app", "--state-dir"],
            ("machine", "ps"): ["ID", "-a,--app", "--json", "--state-dir"],
            ("app", "create"): ["NAME", "-o,--org", "--json", "--state-dir"],
            ("app", "list"): ["--json", "--state-dir"],
            ("app", "destroy"): ["NAME", "-f,--force", "--state-dir"],
            ("volume", "create"): ["NAME", "-s,--size", "-a,--app", "--json", "--state-dir"],
            ("volume", "list"): ["-a,--app", "--json", "--state-dir"],
            ("volume", "destroy"): ["VOLUME", "-a,--app", "--state-dir"],
            ("vm", "run"): ["--kernel", "--initrd", "--cmdline", "--cpus", "--memory", "--disk", "--net", "--vsock",
                            "--no-rng", "--shared-memory", "--boot-time", "--timeout", "--kvm-device", "--snapshot",
                            "--snapshot-when", "--restore"],
            ("image",): ["--store", "--state-dir", "--insecure", "--registry-mirror"],
            ("image", "pull"): ["REF", "--pull"],
            ("image", "rm"): ["REF", "-f,--force"],
            ("image", "login"): ["REGISTRY", "-u,--username", "-p,--password", "--password-stdin"],
            ("image", "logout"): ["REGISTRY"],
            ("image", "rootfs"): ["REF", "-o,--output", "--size", "--headroom", "--pull"],
        }
        for command, names in options.items():
            out = self.flick(*command, "--help").stdout
            for name in names:
                self.assertRegex(out, rf"(?m)^  {re.escape(name)}\b", command)

    def test_version(self):
        for args in (["--version"], ["version"]):
            p = self.flick(*args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"^flick \d+\.\d+\.\d+\S*\n$")


class UsageErrors(FlickTest):
    MACHINE_RUN = ["machine", "run", "busybox"]
    VM_RUN = ["vm", "run", "--kernel", "/nonexistent/vmlinuz"]
    CASES = [
        ([], "flick: a command is required: app, daemon, image, machine, vm, volume, version"),
        (["bogus"], "flick: unknown command 'bogus'"),
        (["--bogus"], "flick: unknown option '--bogus'"),
        (["machine"], "flick machine: a command is required: " + ", ".join(MACHINE_COMMANDS)),
        (["machine", "bogus"], "flick machine: unknown command 'bogus'"),
        (["machine", "run"], "flick machine run: IMAGE is required"),
        (MACHINE_RUN + ["--cpus", "0"], "flick machine run: --cpus takes 1 to 254, not '0'"),
        (MACHINE_RUN + ["--cpus", "255"], "--cpus takes 1 to 254"),
        (MACHINE_RUN + ["--cpus", "-1"], "--cpus takes 1 to 254"),
        (MACHINE_RUN + ["--memory", "lots"], "--memory takes megabytes"),
        (MACHINE_RUN + ["-e", "FOO"], "--env takes K=V, not 'FOO'"),
        (MACHINE_RUN + ["-v", "vol"], "--volume takes VOL:/PATH, not 'vol'"),
        (MACHINE_RUN + ["--restart", "sometimes"], "--restart takes no, always or on-failure[:N]"),
        (MACHINE_RUN + ["--restart", "on-failure:x"], "--restart on-failure takes :MAX_RETRIES (0 to 1000)"),
        (MACHINE_RUN + ["--restart", "on-failure:1001"], "--restart on-failure takes :MAX_RETRIES (0 to 1000)"),
        (MACHINE_RUN + ["--stop-signal", "0"], "--stop-signal takes 1 to 64"),
        (MACHINE_RUN + ["--stop-timeout", "soon"], "--stop-timeout takes seconds"),
        (MACHINE_RUN + ["--start-timeout", "0"], "--start-timeout takes seconds"),
        (MACHINE_RUN + ["-p", "70000:80"], "flick machine run: --port 70000:80: 70000 is not in 1..65535"),
        (MACHINE_RUN + ["-p", "80:0"], "--port 80:0: 0 is not in 1..65535"),
        (MACHINE_RUN + ["-p", "80/udp"], "--port 80/udp: udp is not supported: flick's proxy speaks tcp only"),
        (MACHINE_RUN + ["-p", "abc"], "--port takes PORT[:INTERNAL][/tcp[:HANDLER]...], not 'abc'"),
        (MACHINE_RUN + ["-p", "80:81:82"], "--port takes PORT[:INTERNAL][/tcp[:HANDLER]...], not '80:81:82'"),
        (MACHINE_RUN + ["-p", "80/sctp"], "--port takes PORT[:INTERNAL][/tcp[:HANDLER]...], not '80/sctp'"),
        (MACHINE_RUN + ["-p", "80/tcp:h2"], "--port 80/tcp:h2: 'h2' is not a handler: http, tls, pg_tls or proxy_proto"),
        (MACHINE_RUN + ["-p"], "flick machine run: --port needs a value"),
        (MACHINE_RUN + ["-p", "80", "--autostop=maybe"], "flick machine run: --autostop takes off, stop or suspend, not 'maybe'"),
        (MACHINE_RUN + ["-p", "80", "--autostart=maybe"], "--autostart takes true or false, not 'maybe'"),
        (MACHINE_RUN + ["--autostop"], "flick machine run: --autostop: the machine has no services: publish a port with -p"),
        (MACHINE_RUN + ["-p", "80", "-p", "80:81"],
         "machine config: services[1].ports[0].port: 80 is published by services[0].ports[0].port too"),
        (MACHINE_RUN + ["--name"], "flick machine run: --name needs a value"),
        (MACHINE_RUN + ["--bogus", "--", "sh"], "flick machine run: unknown option '--bogus'"),
        (MACHINE_RUN + ["-x", "sh"], "flick machine run: unknown option '-x'"),
        (["machine", "create"], "flick machine create: IMAGE is required"),
        (["machine", "create", "busybox", "--cpus", "0"], "flick machine create: --cpus takes 1 to 254, not '0'"),
        (["machine", "create", "busybox", "--memory", "32"],
         "flick machine create: machine config: guest.memory_mb: 32 is not in 64..1048576"),
        (["machine", "create", "busybox", "-v", "data:relative"], "mounts[0].path: 'relative' is not an absolute"),
        (["machine", "create", "busybox", "--name"], "flick machine create: --name needs a value"),
        (["machine", "create", "busybox", "-a"], "flick machine create: --app needs a value"),
        (["machine", "start"], "flick machine start: ID is required"),
        (["machine", "start", "x", "--bogus"], "flick machine start: unknown option '--bogus'"),
        (["machine", "stop", "x", "--signal", "BOGUS"], "flick machine stop: --signal takes a signal name or number"),
        (["machine", "stop", "x", "--signal", "65"], "--signal takes a signal name or number, not '65'"),
        (["machine", "stop", "x", "--timeout", "soon"], "flick machine stop: --timeout takes seconds or a duration"),
        (["machine", "restart", "x", "--timeout", "5y"], "--timeout takes seconds or a duration"),
        (["machine", "signal", "x"], "flick machine signal: SIG is required"),
        (["machine", "signal", "x", "NOPE"], "flick machine signal: SIG takes a signal name"),
        (["machine", "signal", "x", "TERM", "extra"], "flick machine signal: unexpected argument 'extra'"),
        (["machine", "wait", "x", "--state", "starting"],
         "flick machine wait: --state takes started, stopped, destroyed or failed, not 'starting'"),
        (["machine", "wait", "x", "--timeout", "1x"], "flick machine wait: --timeout takes seconds or a duration"),
        (["machine", "wait", "x", "y"], "flick machine wait: unexpected argument 'y'"),
        (["machine", "destroy"], "flick machine destroy: ID is required"),
        (["machine", "list", "--state", "started,bogus"], "flick machine list: --state takes machine states"),
        (["machine", "list", "extra"], "flick machine list: unexpected argument 'extra'"),
        (["machine", "status"], "flick machine status: ID is required"),
        (["machine", "logs"], "flick machine logs: ID is required"),
        (["machine", "ps"], "flick machine ps: ID is required"),
        (["machine", "update"], "flick machine update: ID is required"),
        (["machine", "update", "x", "--cpus", "0"], "flick machine update: --cpus takes 1 to 254, not '0'"),
        (["machine", "update", "x", "--metadata", "novalue"], "flick machine update: --metadata takes K=V, not 'novalue'"),
        (["machine", "update", "x", "-p", "0:80"], "flick machine update: --port 0:80: 0 is not in 1..65535"),
        (["machine", "update", "x", "--autostop=maybe"], "flick machine update: --autostop takes off, stop or suspend"),
        (["machine", "update", "x", "--config", "/nonexistent.json"], "flick machine update: --config: cannot read /nonexistent.json"),
        (["machine", "create", "busybox", "--metadata", "=v"], "flick machine create: --metadata takes K=V, not '=v'"),
        (["machine", "clone"], "flick machine clone: ID is required"),
        (["machine", "metadata"], "flick machine metadata: a command is required: get, set, delete"),
        (["machine", "metadata", "set", "x", "k"], "flick machine metadata set: VALUE is required"),
        (["machine", "lease"], "flick machine lease: a command is required: acquire, show, release"),
        (["machine", "lease", "acquire", "x", "--ttl", "0"], "flick machine lease acquire: --ttl takes seconds from 1, not '0'"),
        (["machine", "cordon"], "flick machine cordon: ID is required"),
        (["app"], "flick app: a command is required: create, list, destroy"),
        (["app", "create"], "flick app create: NAME is required"),
        (["app", "destroy"], "flick app destroy: NAME is required"),
        (["app", "list", "x"], "flick app list: unexpected argument 'x'"),
        (["volume"], "flick volume: a command is required: create, list, destroy"),
        (["volume", "create"], "flick volume create: NAME is required"),
        (["volume", "create", "v", "--size", "0"], "flick volume create: --size takes gigabytes from 1 to 16384, not '0'"),
        (["volume", "destroy"], "flick volume destroy: VOLUME is required"),
        (["vm"], "flick vm: a command is required: run"),
        (["vm", "run"], "flick vm run: --kernel is required (or --restore DIR)"),
        (VM_RUN + ["--restore", "d"], "flick vm run: --restore takes no --kernel"),
        (VM_RUN + ["--snapshot", "d"], "flick vm run: --snapshot and --snapshot-when go together"),
        (["vm", "run", "--kernel"], "flick vm run: --kernel needs a value"),
        (VM_RUN + ["--cpus", "0"], "flick vm run: --cpus takes a number from 1 to 254, not '0'"),
        (VM_RUN + ["--memory", "x"], "--memory takes a size in MiB"),
        (VM_RUN + ["--disk", "d.img,bogus"], "--disk takes PATH[,ro][,cow][,serial=S], not 'd.img,bogus'"),
        (VM_RUN + ["--net", "mac=52:54:00:12:34:56"], "--net takes tap=NAME[,mac=aa:bb:cc:dd:ee:ff]"),
        (VM_RUN + ["--timeout", "soon"], "--timeout takes seconds"),
        (VM_RUN + ["--bogus"], "flick vm run: unknown option '--bogus'"),
        (["vm", "run", "--bogus"], "flick vm run: unknown option '--bogus'"),
        (VM_RUN + ["extra"], "flick vm run: unexpected argument 'extra'"),
        (["image"], "flick image: a command is required: pull, ls, rm, rootfs, prune, login, logout"),
        (["image", "login"], "flick image login: REGISTRY is required"),
        (["image", "login", "r", "--password-stdin"], "flick image login: --password-stdin requires --username"),
        (["image", "login", "r", "-u", "u", "-p", "p", "--password-stdin"],
         "flick image login: --password excludes --password-stdin"),
        (["image", "logout"], "flick image logout: REGISTRY is required"),
        (["image", "--store"], "flick image: --store needs a value"),
        (["image", "pull"], "flick image pull: REF is required"),
        (["image", "pull", "busybox", "--pull", "sometimes"], "--pull takes always, missing or never, not 'sometimes'"),
        (["image", "rm"], "flick image rm: REF is required"),
        (["image", "ls", "extra"], "flick image ls: unexpected argument 'extra'"),
        (["image", "rootfs", "busybox"], "flick image rootfs: --output is required"),
        (["image", "rootfs", "busybox", "-o", "out.img", "--size", "big"], "--size takes bytes or a K, M, G size"),
        (["image", "rootfs", "busybox", "-o", "out.img", "--headroom", "1X"], "--headroom takes bytes or a K, M, G"),
    ]

    def test_one_line_then_the_hint_and_exit_two(self):
        for args, expected in self.CASES:
            with self.subTest(args=args):
                p = self.flick(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(p.stdout, "")
                lines = p.stderr.splitlines()
                self.assertEqual(len(lines), 2, p.stderr)
                self.assertIn(expected, lines[0])
                self.assertEqual(lines[1], HINT)


class MachineRunCommand(FlickTest):
    """What follows IMAGE: flick's options, then CMD, which "--" or the first argument that is
    not an option begins and which takes the rest of the line, whatever it looks like. An image
    that does not exist ends each run as a flick failure (125) once the line has parsed."""

    CASES = [
        ["--rm", "--", "sh", "-c", "echo hi", "--rm", "-v"],
        ["--", "-x", "--cpus", "0"],
        ["--", "--", "x"],
        ["sh", "-c", "exit 3", "--cpus", "0"],   # options after CMD's first word are CMD's
        ["-e", "A=1", "sh", "-e"],               # -e takes one value: sh begins CMD
        ["--name", "run", "vm", "run", "--help"],
        ["--cpus", "2", "--cpus", "3", "-e", "A=1", "--env=B=2", "-v", "data:/data", "--kernel-arg=-x"],
        ["-p", "8080", "--autostart", "--autostop", "sh", "-p", "x"],  # no value after a space: sh begins CMD
        ["--port=18080:8080/tcp:tls:http", "--autostop=suspend", "--autostart=false", "--", "--autostop=x"],
    ]

    def test_any_command_parses(self):
        image = f"oci:{self.dir / 'no-such-layout'}"
        for args in self.CASES:
            with self.subTest(args=args):
                p = self.flick("machine", "run", image, "--no-network", *args)
                self.assertEqual(p.returncode, 125, p.stderr)
                self.assertIn("not an OCI image layout", p.stderr)


class StoreCommands(FlickTest):
    """Commands over the store alone, in a temporary --state-dir."""

    def setUp(self) -> None:
        super().setUp()
        self.env.pop("FLICK_APP", None)
        self.state = self.dir / "given-state"

    def store(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([FLICK, *args, "--state-dir", str(self.state)], capture_output=True, text=True,
                              env=env or self.env, timeout=60, stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> str:
        p = self.store(*args)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stderr}")
        self.assertEqual(p.stderr, "", args)
        return p.stdout

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json"))

    def fails(self, *args: str, says: str, env: dict[str, str] | None = None) -> None:
        p = self.store(*args, env=env)
        self.assertEqual(p.returncode, 1, f"{args}: {p.stdout} {p.stderr}")
        self.assertEqual(p.stdout, "", args)
        self.assertEqual(p.stderr, f"flick: {says}\n", args)


class Store(StoreCommands):
    """Apps, volumes and machine lookups."""

    def test_uses_the_state_dir_given(self):
        self.ok("app", "create", "web")
        self.assertTrue((self.state / "flick.db").exists())
        self.assertFalse((self.dir / "state").exists())

    def test_no_machines(self):
        self.assertEqual(self.ok("machine", "list"), "No machines in app default.\n")
        self.assertEqual(self.json("machine", "list"), [])
        self.assertEqual(self.json("machine", "list", "--state", "started,stopped"), [])

    def test_unknown_machine(self):
        for args in (["start", "nosuch"], ["stop", "nosuch"], ["restart", "nosuch"], ["destroy", "nosuch"],
                     ["destroy", "--force", "nosuch"], ["status", "nosuch"], ["status", "--json", "nosuch"],
                     ["logs", "nosuch"], ["logs", "-f", "nosuch"], ["wait", "nosuch"], ["signal", "nosuch", "TERM"]):
            with self.subTest(args=args):
                self.fails("machine", *args, says="machine nosuch not found")
        self.fails("machine", "status", "nosuch", "-a", "default", says="machine nosuch not found in app default")

    def test_each_unknown_machine_is_named(self):
        p = self.store("machine", "stop", "one", "two")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr, "flick: machine one not found\nflick: machine two not found\n")

    def test_unknown_app(self):
        for args in (["machine", "list", "-a", "nope"], ["machine", "create", "busybox", "-a", "nope"],
                     ["machine", "start", "x", "-a", "nope"], ["machine", "status", "x", "--app", "nope"],
                     ["volume", "create", "v", "-a", "nope"], ["volume", "list", "-a", "nope"],
                     ["volume", "destroy", "v", "-a", "nope"], ["app", "destroy", "nope"]):
            with self.subTest(args=args):
                self.fails(*args, says="app nope not found")
        self.fails("machine", "list", says="app nope not found", env=dict(self.env, FLICK_APP="nope"))
        self.assertEqual([a["name"] for a in self.json("app", "list")], ["default"])
        self.assertEqual(list((self.dir / "cache").glob("**/*.ext4")), [])  # no image was fetched or built

    def test_machine_create_that_fails_changes_nothing(self):
        p = self.store("machine", "create", f"oci:{self.dir / 'no-such-layout'}", "--no-network")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertRegex(p.stderr, r"^flick: .*not an OCI image layout.*\n$")
        self.assertEqual(self.json("machine", "list"), [])
        p = self.store("machine", "create", f"oci:{self.dir / 'no-such-layout'}", "-v", "data:/data")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not an OCI image layout", p.stderr)
        self.assertEqual(self.json("volume", "list"), [])  # the volume is not made for a bad image
        # --pull never: an image not in the cache is not fetched, and nothing is made.
        p = self.store("machine", "create", "127.0.0.1:1/app:v1", "--pull", "never", "-v", "data:/data")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"^flick: image 127.0.0.1:1/app:v1: the pull policy is never: "
                                   r"127.0.0.1:1/app:v1 is not in the image cache at .*\n$")
        self.assertEqual(self.json("volume", "list"), [])
        self.assertEqual(self.json("machine", "list"), [])

    def test_apps(self):
        self.assertEqual(self.ok("app", "create", "web"), "app web created\n")
        made = self.json("app", "create", "api", "--org", "acme")
        self.assertEqual((made["name"], made["organization"]["slug"], made["machine_count"]), ("api", "acme", 0))
        self.fails("app", "create", "web", says="app name web has already been taken")
        self.fails("app", "create", "Web!", says='app name "Web!" is not valid: use 1-63 of a-z, 0-9 and -')
        apps = self.json("app", "list")
        self.assertEqual([a["name"] for a in apps], ["api", "default", "web"])
        for a in apps:
            self.assertEqual(list(a), ["id", "name", "organization", "machine_count", "volume_count", "created_at"])
            self.assertRegex(a["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        table = self.ok("app", "list").splitlines()
        self.assertEqual(table[0].split(), ["NAME", "ORG", "MACHINES", "VOLUMES", "CREATED"])
        self.assertEqual([row.split()[:2] for row in table[1:]], [["api", "acme"], ["default", "personal"],
                                                                   ["web", "personal"]])
        self.assertEqual(self.ok("app", "destroy", "web"), "app web destroyed\n")
        self.assertEqual([a["name"] for a in self.json("app", "list")], ["api", "default"])

    def test_app_with_volumes_needs_force(self):
        self.ok("app", "create", "web")
        vol = self.json("volume", "create", "data", "-a", "web")
        self.fails("app", "destroy", "web", says="app web has 0 machines and 1 volumes: destroy them first, or use force")
        self.assertEqual(self.json("app", "list")[1]["volume_count"], 1)
        self.ok("app", "destroy", "web", "--force")
        self.assertFalse(Path(vol["path"]).exists())
        self.fails("volume", "list", "-a", "web", says="app web not found")

    def test_volumes(self):
        first = self.ok("volume", "create", "data").strip()
        self.assertRegex(first, r"^vol_[a-z0-9]{16}$")
        second = self.json("volume", "create", "data", "--size", "3")
        self.assertEqual({k: second[k] for k in ("name", "state", "size_gb", "attached_machine_id", "app")},
                         {"name": "data", "state": "created", "size_gb": 3, "attached_machine_id": None, "app": "default"})
        self.assertTrue(Path(second["path"]).is_file())
        self.assertEqual([(v["id"], v["size_gb"]) for v in self.json("volume", "list")], [(first, 1), (second["id"], 3)])
        table = self.ok("volume", "list").splitlines()
        self.assertEqual(table[0].split(), ["ID", "NAME", "SIZE", "ATTACHED", "VM"])
        self.assertEqual(table[2].split(), [second["id"], "data", "3GB"])
        self.fails("volume", "destroy", "data", says="volume name data is not unique in app default: use its id")
        self.assertEqual(self.ok("volume", "destroy", first), f"volume {first} destroyed\n")
        self.ok("volume", "destroy", "data")  # unique now
        self.assertFalse(Path(second["path"]).exists())
        self.assertEqual(self.ok("volume", "list"), "No volumes in app default.\n")
        self.fails("volume", "destroy", "data", says="volume data not found")
        self.fails("volume", "create", "Bad-Name", says="volume name 'Bad-Name': use 1 to 30 of a-z, 0-9 and _")

    def test_app_from_the_environment(self):
        self.ok("app", "create", "web")
        env = dict(self.env, FLICK_APP="web")
        p = self.store("volume", "create", "data", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([v["app"] for v in self.json("volume", "list", "-a", "web")], ["web"])
        self.assertEqual(self.json("volume", "list"), [])


class MachineChanges(StoreCommands):
    """update, clone, metadata, cordon, leases and --config over machines that are created but
    never started (the test guest is their kernel; `update` and `clone` get --skip-start)."""

    KERNEL = os.environ.get("FLICK_TEST_GUEST_KERNEL", "")
    layout: Path | None = None

    @classmethod
    def setUpClass(cls) -> None:
        if not cls.KERNEL:
            return
        cls.layout_dir = Path(tempfile.mkdtemp(prefix="flick-cli-image-"))
        root = Path(__file__).resolve().parents[2]
        cls.image = subprocess.run([sys.executable, str(root / "scripts" / "busybox-image.py"), str(cls.layout_dir / "l")],
                                   check=True, capture_output=True, text=True).stdout.strip()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.KERNEL:
            shutil.rmtree(cls.layout_dir, ignore_errors=True)

    def setUp(self) -> None:
        super().setUp()
        if not self.KERNEL:
            self.skipTest("needs FLICK_TEST_GUEST_KERNEL (the build's test guest)")
        self.env["FLICK_KERNEL"] = self.KERNEL

    def create(self, *args: str) -> dict:
        # The options before CMD, which takes the rest of the line.
        p = subprocess.run([FLICK, "machine", "create", self.image, "--no-network", "--json", "--state-dir",
                            str(self.state), *args], capture_output=True, text=True, env=self.env, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stderr}")
        return json.loads(p.stdout)

    def status(self, machine: str) -> dict:
        return self.json("machine", "status", machine)

    def config_file(self, config: dict) -> str:
        path = self.dir / "config.json"
        path.write_text(json.dumps(config))
        return str(path)

    def test_config_file_with_flags_over_it(self):
        path = self.config_file({"image": "ignored-for-IMAGE", "guest": {"cpus": 2, "memory_mb": 128},
                                 "env": {"A": "1", "B": "2"}, "init": {"cmd": ["sh", "-c", "echo hi"]},
                                 "restart": {"policy": "always"}, "metadata": {"role": "web"}})
        m = self.create("--config", path, "--cpus", "3", "-e", "B=9", "--metadata", "tier=gold")
        c = m["config"]
        self.assertEqual(c["image"], self.image)  # IMAGE, given on the line
        self.assertEqual((c["guest"]["cpus"], c["guest"]["memory_mb"]), (3, 128))
        self.assertEqual(c["env"], {"A": "1", "B": "9"})
        self.assertEqual(c["init"]["cmd"], ["sh", "-c", "echo hi"])  # no CMD given: the file's
        self.assertEqual(c["restart"]["policy"], "always")
        self.assertEqual(c["metadata"], {"role": "web", "tier": "gold"})
        m = self.create("--config", path, "--", "echo", "mine")
        self.assertEqual(m["config"]["init"]["cmd"], ["echo", "mine"])
        # A bad file is a bad command line, naming the field; nothing is created.
        before = len(self.json("machine", "list"))
        for command in ("create", "run"):
            bad = self.config_file({"image": "x", "guest": {"cpuz": 1}})
            p = self.store("machine", command, self.image, "--config", bad)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(f"flick machine {command}: --config {bad}: machine config: guest.cpuz: unknown field",
                          p.stderr)
        self.assertEqual(len(self.json("machine", "list")), before)

    def test_update_makes_a_version_and_keeps_the_old(self):
        m = self.create("-e", "GREETING=one", "--", "sh", "-c", "echo $GREETING")
        self.assertEqual(m["version"], 1)
        out = self.ok("machine", "update", m["id"], "--skip-start", "-e", "GREETING=two", "--cpus", "2",
                      "--metadata", "role=db", "--user", "nobody", "--workdir", "/tmp", "--rootfs-size", "48")
        after = self.status(m["id"])
        self.assertEqual(out, f"machine {m['id']} updated to version 2 (instance {after['instance_id']})\n")
        self.assertNotEqual(after["instance_id"], m["instance_id"])
        self.assertEqual(after["state"], "created")
        self.assertEqual(after["config"]["env"], {"GREETING": "two"})
        self.assertEqual(after["config"]["guest"]["cpus"], 2)
        self.assertEqual(after["config"]["guest"]["rootfs_size_mb"], 48)
        self.assertEqual(after["config"]["init"], {"cmd": ["sh", "-c", "echo $GREETING"],  # kept
                                                   "user": "nobody", "workdir": "/tmp"})
        self.assertEqual(after["events"][0]["type"], "update")
        # --config replaces the whole config (Fly's update has no merge); options change it.
        path = self.config_file({"image": self.image, "init": {"cmd": ["true"]}})
        m3 = self.json("machine", "update", m["id"], "--skip-start", "--config", path, "--memory", "128")
        self.assertEqual(m3["version"], 3)
        self.assertEqual(m3["config"]["init"]["cmd"], ["true"])
        self.assertEqual(m3["config"]["guest"], {"cpu_kind": "shared", "cpus": 1, "memory_mb": 128})
        self.assertNotIn("env", m3["config"])
        self.assertIn("Version = 3 (instance " + m3["instance_id"] + ")",
                      re.sub(r" +=", " =", self.ok("machine", "status", m["id"])))
        self.fails("machine", "update", m["id"], "--skip-start", "--memory", "32",
                   says="machine config: guest.memory_mb: 32 is not in 64..1048576")
        self.fails("machine", "update", m["id"], "--skip-start", "--rootfs-size", "8",
                   says="machine config: guest.rootfs_size_mb: 8 is not 0 or in 16..1048576")
        self.assertEqual(self.status(m["id"])["version"], 3)

    def test_services_from_ports_and_autostop(self):
        m = self.create("-p", "18080:8080/tcp", "-p", "18443:8080", "--autostop=suspend", "--autostart")
        web = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 18080}, {"port": 18443}],
               "autostart": True, "autostop": "suspend"}
        self.assertEqual(m["config"]["services"], [web])
        self.assertEqual(self.status(m["id"])["config"]["services"], [web])
        # update: -p adds a service for a new internal port, and replaces only the ports of one
        # there is; the other fields are kept.
        after = self.json("machine", "update", m["id"], "--skip-start", "-p", "19000:9000")
        self.assertEqual(after["config"]["services"], [web, {"protocol": "tcp", "internal_port": 9000,
                                                             "ports": [{"port": 19000}]}])
        after = self.json("machine", "update", m["id"], "--skip-start", "-p", "28080:8080/tcp:tls:http", "--autostop",
                          "--autostart=false")
        self.assertEqual(after["config"]["services"], [
            {**web, "ports": [{"port": 28080, "handlers": ["tls", "http"]}], "autostart": False, "autostop": "stop"},
            {"protocol": "tcp", "internal_port": 9000, "ports": [{"port": 19000}], "autostart": False,
             "autostop": "stop"}])
        self.assertEqual(after["version"], 3)
        # Bad values name the flag and change nothing.
        for args, says in ((["-p", "0:80"], "--port 0:80: 0 is not in 1..65535"),
                           (["-p", "80/udp"], "--port 80/udp: udp is not supported: flick's proxy speaks tcp only"),
                           (["-p", "abc"], "--port takes PORT[:INTERNAL][/tcp[:HANDLER]...], not 'abc'"),
                           (["--autostop=maybe"], "--autostop takes off, stop or suspend, not 'maybe'")):
            with self.subTest(args=args):
                p = self.store("machine", "update", m["id"], "--skip-start", *args)
                self.assertEqual((p.returncode, p.stdout), (2, ""), p.stderr)
                self.assertEqual(p.stderr.splitlines()[0], "flick machine update: " + says)
        self.fails("machine", "update", m["id"], "--skip-start", "-p", "19000:8080",
                   says="machine config: services[1].ports[0].port: 19000 is published by services[0].ports[0].port too")
        self.assertEqual(self.status(m["id"])["version"], 3)
        self.assertEqual(self.status(m["id"])["config"]["services"], after["config"]["services"])
        plain = self.create()
        self.fails("machine", "update", plain["id"], "--skip-start", "--autostop=off",
                   says="--autostop: the machine has no services: publish a port with -p")
        self.assertEqual(self.status(plain["id"])["version"], 1)
        # Over --config: -p replaces the ports of the file's service, keeping its other fields.
        path = self.config_file({"image": self.image, "services": [
            {"internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}], "autostop": True,
             "concurrency": {"type": "connections", "hard_limit": 25}, "autostop_idle": "2m"}]})
        m = self.create("--config", path, "-p", "8000:8080")
        self.assertEqual(m["config"]["services"], [
            {"internal_port": 8080, "ports": [{"port": 8000}], "autostop": True,
             "concurrency": {"type": "connections", "hard_limit": 25}, "autostop_idle": "2m"}])

    def test_metadata(self):
        m = self.create("--metadata", "role=web")
        self.assertEqual(self.ok("machine", "metadata", "set", m["id"], "tier", "gold"), "")
        self.assertEqual(self.ok("machine", "metadata", "get", m["id"]), "role=web\ntier=gold\n")
        self.assertEqual(self.ok("machine", "metadata", "get", m["id"], "tier"), "gold\n")
        self.assertEqual(self.json("machine", "metadata", "get", m["id"]), {"role": "web", "tier": "gold"})
        self.ok("machine", "metadata", "delete", m["id"], "role")
        self.assertEqual(self.status(m["id"])["config"]["metadata"], {"tier": "gold"})
        self.assertEqual(self.status(m["id"])["version"], 1)
        self.fails("machine", "metadata", "get", m["id"], "role", says=f"machine {m['id']} has no metadata key role")
        self.fails("machine", "metadata", "set", m["id"], "a b", "v",
                   says="metadata key 'a b' is not valid: use 1 to 128 of a-z, A-Z, 0-9, _, . and -")

    def test_cordon_and_a_lease_that_guards_it(self):
        m = self.create()
        self.assertEqual(self.ok("machine", "cordon", m["id"]), f"machine {m['id']} cordoned\n")
        self.assertTrue(self.status(m["id"])["cordoned"])
        nonce = self.ok("machine", "lease", "acquire", m["id"], "--ttl", "60", "--description", "deploy").strip()
        self.assertRegex(nonce, r"^[0-9a-f]{32}$")
        lease = self.json("machine", "lease", "show", m["id"])
        self.assertEqual((lease["nonce"], lease["description"]), (nonce, "deploy"))
        self.assertEqual(self.status(m["id"])["lease"]["nonce"], nonce)
        for args in (["uncordon", m["id"]], ["destroy", m["id"]], ["start", m["id"]],
                     ["update", m["id"], "--skip-start"], ["lease", "acquire", m["id"]]):
            with self.subTest(args=args):
                p = self.store("machine", *args)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertRegex(p.stderr, rf"^flick: machine ID {m['id']} lease currently held by .+, expires at ")
        p = self.store("machine", "uncordon", m["id"], "--lease-nonce", "0" * 32)  # a wrong nonce is no better
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertTrue(p.stderr.startswith(f"flick: machine ID {m['id']} lease currently held by {lease['owner']}"),
                        p.stderr)
        self.ok("machine", "metadata", "set", m["id"], "k", "v")  # not guarded, as Fly
        self.ok("machine", "uncordon", m["id"], "--lease-nonce", nonce)
        self.assertFalse(self.status(m["id"])["cordoned"])
        self.assertEqual(self.ok("machine", "lease", "acquire", m["id"], "--lease-nonce", nonce).strip(), nonce)
        self.fails("machine", "lease", "release", m["id"], "0" * 32,
                   says=f"lease not found: machine {m['id']} holds no lease with that nonce")
        self.assertEqual(self.ok("machine", "lease", "release", m["id"], nonce), f"machine {m['id']} lease released\n")
        self.fails("machine", "lease", "show", m["id"], says=f"lease not found: machine {m['id']} has no live lease")
        self.ok("machine", "destroy", m["id"])

    def test_clone(self):
        m = self.create("--name", "src", "-e", "A=1", "--metadata", "role=web", "--", "echo", "hi")
        self.ok("volume", "create", "data")
        out = self.ok("machine", "clone", "src", "--name", "copy", "--skip-start").strip()
        copy = self.status("copy")
        self.assertEqual(copy["id"], out)
        self.assertNotEqual(copy["id"], m["id"])
        self.assertEqual(copy["config"], m["config"])
        self.assertEqual(copy["state"], "created")
        self.assertEqual(sorted(x["name"] for x in self.json("machine", "list")), ["copy", "src"])
        self.fails("machine", "clone", "src", "--name", "copy", "--skip-start", says="machine name copy is taken in app default")
        with_volume = self.create("-v", "data:/data")
        p = self.store("machine", "clone", with_volume["id"], "--skip-start")
        self.assertEqual(p.returncode, 1)
        self.assertIn("volumes are not shared", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
