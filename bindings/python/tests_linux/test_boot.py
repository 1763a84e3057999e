"""End-to-end through the binding: a machine on a real Linux guest boots, execs, logs, stops,
starts again and is destroyed. Needs a /dev/kvm that runs Linux and the guest kernel in
FLICK_KERNEL/FLICK_KERNEL_MODULES; tests/bindings/bindings_linux_test.py runs it (in the test host where
this machine's /dev/kvm cannot run Linux), with FLICK_TEST_IMAGE naming a local busybox image.
Nothing here skips: a missing variable fails."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

import flick


@pytest.fixture
def host(tmp_path: Path) -> Iterator[flick.Host]:
    for name in ("FLICK_KERNEL", "FLICK_KERNEL_MODULES", "FLICK_TEST_IMAGE"):
        if not os.environ.get(name):
            pytest.fail(f"{name} is not set (tests/bindings/bindings_linux_test.py sets it)")
    with flick.Host(tmp_path / "state", cache_dir=tmp_path / "cache", run_dir=tmp_path / "run",
                    networking="none") as h:
        yield h


def wait_for(what: str, ok, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


def test_a_machine_boots_execs_stops_and_starts_again(host: flick.Host) -> None:
    cfg = flick.MachineConfig(image=os.environ["FLICK_TEST_IMAGE"], guest=flick.Guest(memory_mb=256),
                              init=flick.Init(cmd=["sh", "-c", "echo booted-$MODE; exec sleep 3600"]),
                              env={"MODE": "e2e"}, restart=flick.Restart(policy="no"))
    with host.create_machine(cfg, name="e2e") as m:
        m.wait("started", timeout=120)
        assert m.state == "started"

        r = m.exec(["sh", "-c", 'read line; echo "$line-$EXTRA"; echo oops >&2; exit 3'],
                   stdin=b"hello\n", env={"EXTRA": "x"})
        assert (r.exit_code, r.stdout, r.stderr) == (3, b"hello-x\n", b"oops\n")
        r = m.exec(["cat", "/proc/meminfo"])
        total_kb = int(next(l for l in r.stdout.decode().splitlines() if l.startswith("MemTotal")).split()[1])
        assert 128 * 1024 < total_kb <= 256 * 1024
        with pytest.raises(flick.Timeout):
            m.exec(["sleep", "30"], timeout=1)
        wait_for("the program's output in the console log", lambda: b"booted-e2e" in m.logs())

        m.stop(timeout=10)
        m.wait("stopped", timeout=60)
        with pytest.raises(flick.Busy):
            m.exec(["true"])
        m.start()
        m.wait("started", timeout=120)
        assert m.exec(["echo", "again"]).stdout == b"again\n"

        m.signal(signal.SIGKILL)  # the program dies; with restart "no" the machine stops
        m.wait("stopped", timeout=60)
        kinds = [e.get("type") for e in m.events()]
        assert kinds.count("start") >= 2 and "exit" in kinds, kinds
        m.destroy(force=True)
        assert m.state == "destroyed"
    assert host.machines() == []
