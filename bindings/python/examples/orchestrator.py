#!/usr/bin/env python3
"""An app's three machines from one image: create, start, wait, exec in one, list, stop,
destroy. Needs KVM. Usage: orchestrator.py [IMAGE] (default: busybox)."""

from __future__ import annotations

import sys
import time

import flick


def main(image: str = "busybox") -> int:
    started = time.monotonic()
    with flick.Host() as host:
        host.pull(image, progress=lambda done, total: print(f"\rpull {done}/{total} bytes", end=""))
        print()
        if "orchestra" not in {a["name"] for a in host.apps()}:
            host.create_app("orchestra")
        config = {"image": image, "init": {"cmd": ["sleep", "3600"]}, "metadata": {"role": "worker"}}
        machines = [host.create_machine(config, app="orchestra", name=f"worker-{i}", skip_launch=True)
                    for i in range(3)]
        try:
            for m in machines:
                m.start()
            for m in machines:  # generous: a boot takes well under a second on KVM, a minute emulated
                m.wait("started", timeout=300)
            r = machines[0].exec(["sh", "-c", "echo hello from $(hostname)"], timeout=10)
            print(f"exec: exit {r.exit_code}: {r.stdout.decode().strip()}")
            for info in host.machines(app="orchestra", metadata={"role": "worker"}):
                print(f"{info['id']}  {info['name']:<10} {info['state']}")
            for m in machines:
                m.stop(timeout=10)
        finally:
            for m in machines:
                m.destroy(force=True)
                m.close()
        host.destroy_app("orchestra")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
