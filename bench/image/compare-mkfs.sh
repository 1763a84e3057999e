#!/usr/bin/env bash
# Times flick's build_rootfs on a realistic image beside `mkfs.ext4 -d` on the same tree, in
# the same run, and prints both and the ratio.
#
# The image: a Debian bookworm minbase rootfs made by mmdebstrap, packed as a one-layer OCI
# image with umoci (gzip layer). The tree for mkfs.ext4 -d is that image unpacked by umoci.
# Both produce an ext4 image of the same size (the size flick computes), on the same disk.
#
# usage: bench/image/compare-mkfs.sh [BUILD_DIR] [REPETITIONS]   (needs root for mmdebstrap)
set -euo pipefail
build=${1:-build/image}
reps=${2:-3}
bench=$build/bench/image/image_rootfs_bench
[[ -x $bench ]] || { echo "build the image_rootfs_bench target in $build first" >&2; exit 1; }
cache=${FLICK_BENCH_CACHE:-$build/bench-cache}
work=$(mktemp -d "${TMPDIR:-/tmp}/flick-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

tarball=$cache/debian-bookworm-minbase.tar
if [[ ! -s $tarball ]]; then
  echo "creating $tarball with mmdebstrap (one-off)..." >&2
  mmdebstrap --quiet --variant=minbase --mode=root --format=tar bookworm "$tarball.part" http://deb.debian.org/debian
  mv "$tarball.part" "$tarball"
fi
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

# flick: layers (gzip) -> ext4, via Google Benchmark.
FLICK_BENCH_LAYERS=$layer FLICK_BENCH_OUTPUT=$work/flick.ext4 "$bench" \
  --benchmark_repetitions="$reps" --benchmark_format=json --benchmark_out="$work/flick.json" \
  --benchmark_out_format=json >/dev/null
read -r flick_ms image_bytes < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['benchmarks']; \
r=[b for b in d if b.get('run_type')=='iteration']; t=sorted(b['real_time'] for b in r); \
print('%.1f %d' % (t[len(t)//2], r[0]['image_bytes']))" "$work/flick.json")
e2fsck -fn "$work/flick.ext4" >/dev/null

# mkfs.ext4 -d: the already-extracted tree -> ext4 of the same size.
mkfs_times=()
for ((i = 0; i < reps; i++)); do
  rm -f "$work/mkfs.ext4"
  truncate -s "$image_bytes" "$work/mkfs.ext4"
  start=$(date +%s%N)
  mkfs.ext4 -q -F -d "$tree" "$work/mkfs.ext4"
  end=$(date +%s%N)
  mkfs_times+=($(( (end - start) / 1000 )))
done
mkfs_ms=$(printf '%s\n' "${mkfs_times[@]}" | sort -n | awk -v n="$reps" 'NR == int(n / 2) + 1 { printf "%.1f", $1 / 1000 }')
e2fsck -fn "$work/mkfs.ext4" >/dev/null

echo "image:        Debian bookworm minbase (mmdebstrap), ${tree_mb} MB in ${files} paths; gzip layer ${layer_mb} MB"
echo "ext4 size:    $(( image_bytes / 1048576 )) MiB (flick's computed size, used for both)"
echo "flick:        ${flick_ms} ms  (build_rootfs: gzip layer -> ext4, median of $reps)"
echo "mkfs.ext4 -d: ${mkfs_ms} ms  (extracted folder -> ext4, median of $reps; extraction not counted)"
python3 -c "import sys; f, m = float(sys.argv[1]), float(sys.argv[2]); print('ratio:        flick / mkfs.ext4 -d = %.2f' % (f / m))" "$flick_ms" "$mkfs_ms"
