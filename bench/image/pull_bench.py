#!/usr/bin/env python3
"""Pulls a 3-layer image into an empty cache from docker-registry on loopback, through
slow_proxy.py (each request LATENCY ms late, each connection capped at RATE MB/s) with
`flick image pull`: one layer at a time (`--max-concurrent-downloads 1`) vs the default
concurrency, alternating, in the same run. Then SHA-256 of a large file: flick's (image_rootfs_bench's BM_Sha256Layers,
OpenSSL) vs `sha256sum`, alternating. Wall times are medians; MB is 10^6 bytes.

The image: LAYER_MB MiB of random bytes (incompressible) per layer, one file in each tar,
packed by umoci (gzip layers, as compare-mkfs.sh and tests/image do) and copied into the
registry by skopeo (as tests/image/image_cli_test.py does).

usage: bench/image/pull_bench.py [BUILD_DIR] [--rounds N] [--layer-mb MB] [--latency-ms MS]
                                 [--rate-mb-s MB] [--sha-mb MB]
BUILD_DIR (default build/release) has the image_rootfs_bench and flick_cli targets built.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("build", nargs="?", default="build/release")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--layer-mb", type=int, default=8, help="MiB of random bytes per layer")
ap.add_argument("--latency-ms", type=float, default=50)
ap.add_argument("--rate-mb-s", type=float, default=20, help="per connection")
ap.add_argument("--sha-mb", type=int, default=256, help="MiB hashed by both SHA-256s")
args = ap.parse_args()
build = Path(args.build)
rootfs_bench = build / "bench/image/image_rootfs_bench"
flick = build / "bin/flick"
for p in (rootfs_bench, flick):
    if not os.access(p, os.X_OK):
        sys.exit(f"pull_bench.py: no {p}: build image_rootfs_bench and flick_cli in {build}")

work = Path(tempfile.mkdtemp(prefix="flick-pull-bench."))
children: list[subprocess.Popen] = []


def run(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL, **kw)


def start(*argv, stdout=None, stderr=None) -> subprocess.Popen:
    children.append(subprocess.Popen([str(a) for a in argv], stdout=stdout, stderr=stderr, text=True))
    return children[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, log: Path) -> None:
    for _ in range(1000):
        try:
            return socket.create_connection(("127.0.0.1", port)).close()
        except OSError:
            time.sleep(0.01)
    sys.exit(f"pull_bench.py: docker-registry does not listen on port {port}:\n{log.read_text()}")


def timed_ms(argv, env=None) -> float:
    start_time = time.monotonic()
    run(*argv, env=env)
    return (time.monotonic() - start_time) * 1000


try:
    # The image: three gzip layers of random bytes, in docker-registry on loopback.
    layout = work / "layout"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:bench")
    for i in range(1, 4):
        data = work / f"layer{i}.bin"
        data.write_bytes(os.urandom(args.layer_mb << 20))
        with tarfile.open(work / f"layer{i}.tar", "w") as tf:
            tf.add(data, arcname=data.name)
        run("umoci", "raw", "add-layer", "--image", f"{layout}:bench", work / f"layer{i}.tar")
    port = free_port()
    (work / "registry.yml").write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    with open(work / "registry.log", "w") as log:  # it logs skopeo's probes for missing blobs as errors
        start("docker-registry", "serve", work / "registry.yml", stderr=log)
    wait_for(port, work / "registry.log")
    run("skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench",
        f"docker://127.0.0.1:{port}/bench:1")
    proxy = start(sys.executable, HERE / "slow_proxy.py", port, args.latency_ms, args.rate_mb_s,
                  stdout=subprocess.PIPE)
    host = "127.0.0.1:" + proxy.stdout.readline().strip()
    ref = f"{host}/bench:1"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer_bytes = sum(layer["size"] for layer in manifest["layers"])

    # An untimed first pull warms up; then each pull goes into an empty cache, the two kinds
    # alternating.
    env = dict(os.environ, FLICK_INSECURE_REGISTRIES=host)
    run(flick, "image", "--store", work / "probe", "pull", ref, env=env)
    pulls = {
        "sequential": lambda store: timed_ms([flick, "image", "--store", store, "--max-concurrent-downloads", 1,
                                              "pull", ref], env),
        "concurrent": lambda store: timed_ms([flick, "image", "--store", store, "pull", ref], env),
    }
    times: dict[str, list[float]] = {k: [] for k in pulls}
    for _ in range(args.rounds):
        for name, pull in pulls.items():
            times[name].append(pull(work / "store"))
            shutil.rmtree(work / "store")

    # SHA-256 of one large file (in the page cache), the two alternating.
    big = work / "sha.bin"
    big.write_bytes(os.urandom(args.sha_mb << 20))
    sha: dict[str, list[float]] = {"flick": [], "sha256sum": []}  # MB/s
    bench_env = dict(os.environ, FLICK_BENCH_LAYERS=str(big))
    for _ in range(args.rounds):
        out = subprocess.run([rootfs_bench, "--benchmark_filter=BM_Sha256Layers", "--benchmark_format=json"],
                             check=True, capture_output=True, text=True, env=bench_env).stdout
        sha["flick"].append(json.loads(out)["benchmarks"][0]["bytes_per_second"] / 1e6)
        sha["sha256sum"].append(big.stat().st_size / 1e3 / timed_ms(["sha256sum", big]))
finally:
    for p in children:
        p.terminate()
        p.wait()
        if p.stdout:
            p.stdout.close()
    shutil.rmtree(work, ignore_errors=True)

med = {k: statistics.median(v) for k, v in times.items()}
print(f"image:  3 layers of {args.layer_mb} MiB random bytes (gzip, {layer_bytes / 1e6:.1f} MB in all), through "
      f"slow_proxy.py: +{args.latency_ms:g} ms per request, {args.rate_mb_s:g} MB/s per connection")
print(f"{'pull into an empty cache':34s} {'wall':>8s} {'layers':>10s}")
labels = {"sequential": "sequential (1 layer at a time)", "concurrent": "concurrent (4 at a time, default)"}
for name, label in labels.items():
    print(f"{label:34s} {med[name]:5.0f} ms {layer_bytes / 1e3 / med[name]:5.1f} MB/s")
print(f"ratio: concurrent / sequential = {med['concurrent'] / med['sequential']:.2f} wall   (medians of {args.rounds})")
print(f"SHA-256 of a {args.sha_mb} MiB file (page cache)")
for name, label in {"flick": "flick (OpenSSL, BM_Sha256Layers)", "sha256sum": "sha256sum"}.items():
    print(f"{label:34s} {statistics.median(sha[name]):5.0f} MB/s")
print(f"ratio: flick / sha256sum = {statistics.median(sha['flick']) / statistics.median(sha['sha256sum']):.2f}"
      f"   (medians of {args.rounds})")
