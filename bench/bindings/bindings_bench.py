#!/usr/bin/env python3
"""What a call costs through each binding, against the C++ API, in one run (bench/bindings).

  bindings_bench.py BUILD_DIR [--machines N] [--iterations N] [--json FILE]

Installs BUILD_DIR into a scratch prefix (`cmake --install`) and uses only that, as a user
would: a state directory gets N machines (default 100) in app `bench`, made through the Python
binding (`skip_launch`: nothing boots, no KVM needed), and each language then times the same
two operations on it, each loaded from that one installed libflick:

  get   open machine m0 by id, read it, close it:  Host::get (C++); flick_machine_open +
        flick_machine_get + flick_machine_close (C); Host.machine(id).get() (Python);
        Host.OpenMachine + Get + Close (Go)
  list  the app's N machines: Host::list (C++); flick_machine_list (C); Host.machines (Python);
        Host.ListMachines (Go)

The C++ and C program is compiled here against the prefix (pkg-config flick); Go's timing is
`go test -bench` of bindings/go (bench_test.go, offline). Printed: mean µs per call in each
language and its ratio to C++. A non-zero exit means a call failed, never that one was slow.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NATIVE = Path(__file__).resolve().parent / "native_calls.cpp"
APP = "bench"


def install(build: Path, work: Path) -> Path:
    prefix = work / "prefix"
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], check=True,
                   stdout=subprocess.DEVNULL)
    return prefix


def library(prefix: Path) -> Path:
    found = sorted(prefix.rglob("libflick.so.*[0-9]"))
    if not found:
        raise SystemExit(f"bindings_bench: the install has no libflick.so.N under {prefix}")
    return found[0]


def pc_path(prefix: Path) -> str:
    return ":".join(str(p.parent) for p in prefix.rglob("flick.pc"))


def setup(work: Path, prefix: Path, kernel: str, machines: int) -> dict[str, str]:
    """Makes the state directory through the Python binding; returns the host's directories."""
    sys.path.insert(0, str(ROOT / "bindings" / "python"))
    os.environ["FLICK_LIBRARY"] = str(library(prefix))
    import flick  # noqa: E402 (the installed library, named above)

    layout = work / "layout"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "busybox-image.py"), str(layout)], check=True,
                   stdout=subprocess.DEVNULL)
    dirs = {"state": str(work / "state"), "cache": str(work / "cache"), "run": str(work / "run"),
            "kernel": kernel, "vmm": str(next(prefix.rglob("flick-vmm")))}
    with flick.Host(dirs["state"], cache_dir=dirs["cache"], run_dir=dirs["run"], kernel=kernel,
                    vmm_program=dirs["vmm"], networking="none") as host:
        host.create_app(APP)
        for i in range(machines):
            host.create_machine({"image": f"oci:{layout}:latest"}, app=APP, name=f"m{i}",
                                skip_launch=True).close()
        dirs["id"] = host.machine("m0", app=APP).id
    return dirs


def python_calls(dirs: dict[str, str], machines: int, iterations: int) -> dict[str, float]:
    import flick
    with flick.Host(dirs["state"], cache_dir=dirs["cache"], run_dir=dirs["run"], kernel=dirs["kernel"],
                    vmm_program=dirs["vmm"], networking="none") as host:
        def get() -> None:
            with host.machine(dirs["id"], app=APP) as m:
                if m.get()["id"] != dirs["id"]:
                    raise SystemExit("bindings_bench: Python get read another machine")

        def list_all() -> None:
            if len(host.machines(app=APP)) != machines:
                raise SystemExit("bindings_bench: Python list did not list every machine")

        return {"get": mean_us(get, iterations), "list": mean_us(list_all, iterations)}


def mean_us(call, iterations: int) -> float:
    call()  # warm
    t0 = time.perf_counter()
    for _ in range(iterations):
        call()
    return (time.perf_counter() - t0) / iterations * 1e6


def native_calls(work: Path, prefix: Path, dirs: dict[str, str], machines: int, iterations: int,
                 env: dict[str, str]) -> dict[str, dict[str, float]]:
    exe = work / "native_calls"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "flick"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["c++", "-std=c++20", "-O2", "-o", str(exe), str(NATIVE), *flags], env=env, check=True)
    out = subprocess.run([str(exe), dirs["state"], dirs["cache"], dirs["run"], dirs["kernel"], dirs["vmm"],
                          APP, dirs["id"], str(machines), str(iterations)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def go_calls(work: Path, dirs: dict[str, str], machines: int, iterations: int,
             env: dict[str, str]) -> dict[str, float]:
    env = {**env, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOENV": "off", "CGO_ENABLED": "1",
           "GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"),
           "FLICK_BENCH_STATE_DIR": dirs["state"], "FLICK_BENCH_CACHE_DIR": dirs["cache"],
           "FLICK_BENCH_RUN_DIR": dirs["run"], "FLICK_BENCH_KERNEL": dirs["kernel"],
           "FLICK_BENCH_VMM": dirs["vmm"], "FLICK_BENCH_APP": APP, "FLICK_BENCH_ID": dirs["id"],
           "FLICK_BENCH_MACHINES": str(machines)}
    r = subprocess.run(["go", "test", "-run", "^$", "-bench", "^BenchmarkCall", "-benchtime", f"{iterations}x", "."],
                       cwd=ROOT / "bindings" / "go", env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bindings_bench: go test -bench failed:\n{r.stdout}{r.stderr}")
    found = dict(re.findall(r"^BenchmarkCall(Get|List)\S*\s+\d+\s+([\d.]+) ns/op", r.stdout, re.M))
    if set(found) != {"Get", "List"}:
        raise SystemExit(f"bindings_bench: go test -bench printed no timing for get and list:\n{r.stdout}")
    return {"get": float(found["Get"]) / 1000, "list": float(found["List"]) / 1000}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", type=Path)
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--kernel", help="a guest kernel file (default: the build's test guest)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    build = args.build.resolve()
    kernel = args.kernel or str(build / "guest" / "testguest-pvh.elf")
    work = Path(tempfile.mkdtemp(prefix="flick-bindings-bench-"))
    try:
        prefix = install(build, work)
        env = {**os.environ, "PKG_CONFIG_PATH": pc_path(prefix), "LD_LIBRARY_PATH": str(library(prefix).parent)}
        dirs = setup(work, prefix, kernel, args.machines)
        results = native_calls(work, prefix, dirs, args.machines, args.iterations, env)
        results["Python"] = python_calls(dirs, args.machines, args.iterations)
        results["Go"] = go_calls(work, dirs, args.machines, args.iterations, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    langs = ["C++", "C", "Python", "Go"]
    print(f"mean µs per call ({args.iterations} calls each, {args.machines} machines in the app)")
    print("| operation | " + " | ".join(langs) + " | " + " | ".join(f"{l} / C++" for l in langs[1:]) + " |")
    print("|---" * (1 + 2 * len(langs) - 1) + "|")
    for op in ("get", "list"):
        base = results["C++"][op]
        cells = [f"{results[l][op]:.1f}" for l in langs] + [f"{results[l][op] / base:.2f}" for l in langs[1:]]
        print(f"| {op} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
