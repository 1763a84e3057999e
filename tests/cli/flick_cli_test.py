#!/usr/bin/env python3
"""The `flick` command line: --help on every command, the version, usage errors (exit 2: one
line naming the command and what is wrong, then a pointer to --help), and where the command
of `flick machine run` begins. Starts no VM, so it needs no KVM.

  flick_cli_test.py FLICK
"""

from __future__ import annotations

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


class Help(FlickTest):
    COMMANDS = [[], ["image"], ["image", "pull"], ["image", "ls"], ["image", "rootfs"], ["image", "prune"],
                ["machine"], ["machine", "run"], ["vm"], ["vm", "run"], ["version"]]

    def test_every_command_has_help(self):
        for command in self.COMMANDS:
            for flag in ("--help", "-h"):
                with self.subTest(command=command, flag=flag):
                    p = self.flick(*command, flag)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(p.stderr, "")
                    self.assertIn("Usage: " + " ".join(["flick", *command]), p.stdout)

    def test_groups_list_their_commands(self):
        for command, subcommands in (([], ["image", "machine", "vm", "version"]),
                                     (["image"], ["pull", "ls", "rootfs", "prune"]),
                                     (["machine"], ["run"]), (["vm"], ["run"])):
            out = self.flick(*command, "--help").stdout
            for sub in subcommands:
                self.assertRegex(out, rf"(?m)^  {sub} ", command)

    def test_help_names_every_option(self):
        options = {
            ("machine", "run"): ["--cpus", "--memory", "-e,--env", "-v,--volume", "--user", "--workdir",
                                 "--entrypoint", "--restart", "--stop-signal", "--stop-timeout", "--start-timeout",
                                 "--rm", "--no-network", "--name", "--kernel", "--kernel-modules", "--kernel-arg",
                                 "--state-dir", "--timings", "IMAGE", "CMD"],
            ("vm", "run"): ["--kernel", "--initrd", "--cmdline", "--cpus", "--memory", "--disk", "--net", "--vsock",
                            "--no-rng", "--shared-memory", "--boot-time", "--timeout", "--kvm-device"],
            ("image",): ["--store", "--insecure"],
            ("image", "rootfs"): ["REF", "-o,--output", "--size", "--headroom"],
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
        ([], "flick: a command is required: image, machine, vm, version"),
        (["bogus"], "flick: unknown command 'bogus'"),
        (["--bogus"], "flick: unknown option '--bogus'"),
        (["machine"], "flick machine: a command is required: run"),
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
        (MACHINE_RUN + ["--name"], "flick machine run: --name needs a value"),
        (MACHINE_RUN + ["--bogus", "--", "sh"], "flick machine run: unknown option '--bogus'"),
        (MACHINE_RUN + ["-x", "sh"], "flick machine run: unknown option '-x'"),
        (["vm"], "flick vm: a command is required: run"),
        (["vm", "run"], "flick vm run: --kernel is required"),
        (["vm", "run", "--kernel"], "flick vm run: --kernel needs a value"),
        (VM_RUN + ["--cpus", "0"], "flick vm run: --cpus takes a number from 1 to 254, not '0'"),
        (VM_RUN + ["--memory", "x"], "--memory takes a size in MiB"),
        (VM_RUN + ["--disk", "d.img,bogus"], "--disk takes PATH[,ro][,cow][,serial=S], not 'd.img,bogus'"),
        (VM_RUN + ["--net", "mac=52:54:00:12:34:56"], "--net takes tap=NAME[,mac=aa:bb:cc:dd:ee:ff]"),
        (VM_RUN + ["--timeout", "soon"], "--timeout takes seconds"),
        (VM_RUN + ["--bogus"], "flick vm run: unknown option '--bogus'"),
        (["vm", "run", "--bogus"], "flick vm run: unknown option '--bogus'"),
        (VM_RUN + ["extra"], "flick vm run: unexpected argument 'extra'"),
        (["image"], "flick image: a command is required: pull, ls, rootfs, prune"),
        (["image", "--store"], "flick image: --store needs a value"),
        (["image", "pull"], "flick image pull: REF is required"),
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
    ]

    def test_any_command_parses(self):
        image = f"oci:{self.dir / 'no-such-layout'}"
        for args in self.CASES:
            with self.subTest(args=args):
                p = self.flick("machine", "run", image, "--no-network", *args)
                self.assertEqual(p.returncode, 125, p.stderr)
                self.assertIn("not an OCI image layout", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
