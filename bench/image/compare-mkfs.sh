#!/usr/bin/env bash
# Times flick's build_rootfs on a realistic image beside `mkfs.ext4 -d` on the same tree,
# `tar -xzf` + `mkfs.ext4 -d` of the same layer, and `gzip -dc > /dev/null` of it (the limit
# for anything that must inflate the layer), in the same run, and prints them and the ratios.
# Then the stages alone: the layer read through ISA-L and through zlib, SHA-256 vs sha256sum.
#
# The image: a Debian bookworm minbase rootfs made by mmdebstrap, packed as a one-layer OCI
# image with umoci (gzip layer). The tree for mkfs.ext4 -d is that image unpacked by umoci.
# Both produce an ext4 image of the same size (the size flick computes), on the same disk.
#
# usage: bench/image/compare-mkfs.sh [BUILD_DIR] [REPETITIONS]
# BUILD_DIR: a Release build with the image_rootfs_bench target built. mmdebstrap needs root.
# FLICK_BENCH_BASELINE: another image_rootfs_bench (say, of the main branch) timed beside it.
set -euo pipefail
build=${1:-build/release}
reps=${2:-3}
bench=$build/bench/image/image_rootfs_bench
[[ -x $bench ]] || { echo "build the image_rootfs_bench target in $build first" >&2; exit 1; }
# In flick's cache, where tests/image/debian_test.cpp makes and finds the same tarball.
cache=${FLICK_BENCH_CACHE:-${FLICK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flick}/debian}
work=$(mktemp -d "${TMPDIR:-/tmp}/flick-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

# The lock is the one debian_test.cpp takes, so only one of them runs mmdebstrap; the rename
# means an interrupted run leaves at most the .part file, never a short tarball.
tarball=$cache/debian-bookworm-minbase.tar
exec 9>"$tarball.lock"
flock 9
if [[ ! -s $tarball ]]; then
  echo "creating $tarball with mmdebstrap (one-off)..." >&2
  rm -f "$tarball.part"
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar bookworm "$tarball.part" http://deb.debian.org/debian
  mv "$tarball.part" "$tarball"
fi
exec 9>&-
layout=$cache/debian-oci
if [[ ! -f $layout/index.json ]] || ! grep -q '"bench"' "$layout/index.json"; then
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:bench"
  umoci raw add-layer --image "$layout:bench" "$tarball"
fi
layer=$(python3 -c "import json,sys; l=sys.argv[1]; i=json.load(open(l+'/index.json')); \
m=json.load(open(l+'/blobs/sha256/'+i['manifests'][0]['digest'][7:])); print(l+'/blobs/sha256/'+m['layers'][0]['digest'][7:])" "$layout")

umoci unpack --image "$layout:bench" "$work/bundle" >/dev/null
tree=$work/bundle/rootfs
tree_mb=$(du -sm "$tree" | cut -f1)
files=$(find "$tree" | wc -l)
layer_mb=$(( $(stat -c %s "$layer") / 1048576 ))

echo "image:        Debian bookworm minbase (mmdebstrap), ${tree_mb} MB in ${files} paths; gzip layer ${layer_mb} MB"

# Each command runs $reps times, alternating, on the same disk; wall and CPU (user+sys of the
# process) are medians. flick runs through the Google Benchmark binary (one iteration per run).
export FLICK_BENCH_LAYERS=$layer FLICK_BENCH_OUTPUT=$work/flick.ext4
python3 - "$reps" "$work" "$bench" "$tree" "$layer" "${FLICK_BENCH_BASELINE:-}" <<'PY'
import json, os, resource, statistics, subprocess, sys, time
reps, work, bench, tree, layer, baseline = int(sys.argv[1]), *sys.argv[2:]

def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000

build_only = "--benchmark_filter=BM_BuildRootfs --benchmark_format=json"
out = subprocess.run(f"{bench} {build_only}", shell=True, check=True, capture_output=True, text=True).stdout
size = int(json.loads(out)["benchmarks"][0]["image_bytes"])
mkfs_img, x = os.path.join(work, "mkfs.ext4"), os.path.join(work, "x")
# name: (untimed setup, timed command)
cmds = {
    "flick": ("true", f"{bench} {build_only}"),
    "mkfs": (f"rm -f {mkfs_img} && truncate -s {size} {mkfs_img}", f"mkfs.ext4 -q -F -d {tree} {mkfs_img}"),
    "tar+mkfs": (f"rm -rf {x} {mkfs_img} && mkdir {x} && truncate -s {size} {mkfs_img}",
                 f"tar -xzf {layer} -C {x} --numeric-owner --xattrs --xattrs-include='*' && "
                 f"mkfs.ext4 -q -F -d {x} {mkfs_img}"),
    "gzip": ("true", f"gzip -dc {layer} > /dev/null"),
    "sha256sum": ("true", f"sha256sum {layer}"),
}
if baseline:
    cmds["baseline"] = ("true", f"{baseline} {build_only}")
runs = {k: [] for k in cmds}
for _ in range(reps):
    for k, (setup, c) in cmds.items():
        subprocess.run(setup, shell=True, check=True)
        runs[k].append(timed(c))
subprocess.run(["e2fsck", "-fn", os.path.join(work, "flick.ext4")], check=True, capture_output=True)
subprocess.run(["e2fsck", "-fn", mkfs_img], check=True, capture_output=True)
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
print(f"ext4 size:    {size >> 20} MiB (flick's computed size, used for all)")
print(f"flick:        {med['flick'][0]:7.0f} ms wall {med['flick'][1]:7.0f} ms cpu   gzip layer -> ext4 (build_rootfs)")
print(f"mkfs.ext4 -d: {med['mkfs'][0]:7.0f} ms wall {med['mkfs'][1]:7.0f} ms cpu   extracted folder -> ext4 (extraction not counted)")
print(f"tar + mkfs:   {med['tar+mkfs'][0]:7.0f} ms wall {med['tar+mkfs'][1]:7.0f} ms cpu   tar -xzf of the same layer, then mkfs.ext4 -d")
print(f"gzip -dc:     {med['gzip'][0]:7.0f} ms wall {med['gzip'][1]:7.0f} ms cpu   the layer inflated to /dev/null (the limit)")
if baseline:
    print(f"baseline:     {med['baseline'][0]:7.0f} ms wall {med['baseline'][1]:7.0f} ms cpu   {baseline}")
print(f"ratio:        flick / (tar + mkfs) = {med['flick'][0] / med['tar+mkfs'][0]:.2f} wall"
      f"   flick / mkfs.ext4 -d = {med['flick'][0] / med['mkfs'][0]:.2f} wall"
      f"   flick / gzip -dc = {med['flick'][0] / med['gzip'][0]:.2f} wall   (medians of {reps})")

# The stages, each alone on the same layer (Google Benchmark, one run of each).
out = subprocess.run([bench, "--benchmark_filter=BM_ReadLayers|BM_Sha256", "--benchmark_format=json"],
                     check=True, capture_output=True, text=True).stdout
for b in json.loads(out)["benchmarks"]:
    print(f"{b['name']:30s} {b['real_time']:7.0f} ms wall {b['bytes_per_second'] / 1e6:7.0f} MB/s")
sha = statistics.median(w for w, _ in runs["sha256sum"])
print(f"{'sha256sum':30s} {sha:7.0f} ms wall {os.path.getsize(layer) / 1e3 / sha:7.0f} MB/s")
PY
