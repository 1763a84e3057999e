#!/usr/bin/env python3
"""Runs a test command that needs KVM where KVM can run it (placement.py): directly, or in
the test host — one test-host boot for the whole command, so a gtest binary's cases share it.
Either way the log says where each test ran, and why.

  kvm_test.py --needs small|linux [--timeout S] [--memory MIB] [--smp N] -- CMD ARGS...

Exits with CMD's status (or the test host's own: 124 timeout/watchdog, 125 test host failed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import placement  # noqa: E402

# Besides what testhost.py always passes (PATH, locale, FLICK_*): what sanitizers and gtest read.
PASSED_PREFIXES = ("ASAN_", "UBSAN_", "LSAN_", "GTEST_")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kvm_test.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--needs", choices=placement.NEEDS, required=True)
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds before the test host's watchdog ends the command (default 600)")
    ap.add_argument("--memory", type=int, default=2048, help="test host memory, MiB")
    ap.add_argument("--smp", type=int, default=1, help="test host vCPUs")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")
    where = placement.place(args.needs)
    if not where.in_testhost:  # (testhost.run() says so itself when it boots the test host)
        print(f"kvm_test: running {Path(cmd[0]).name} {where.describe()}", file=sys.stderr,
              flush=True)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"kvm_test: cannot run {cmd[0]}: {e}", file=sys.stderr)
            return 127
    import testhost  # noqa: E402 (only when needed: it pulls in the kernel cache)
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIXES)}
    env.setdefault("GTEST_COLOR", "no")  # TERM passes through, but the output goes to a log
    try:
        return testhost.run(cmd, timeout=args.timeout, memory_mib=args.memory, smp=args.smp,
                            env=env)
    except FileNotFoundError as e:
        print(f"kvm_test: command not found: {e.args[0]}", file=sys.stderr)
        return testhost.EXIT_NOT_FOUND
    except Exception as e:  # the test host's own failures: one clear line, not a traceback
        print(f"kvm_test: the test host failed: {e}", file=sys.stderr)
        return testhost.EXIT_INFRA


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
