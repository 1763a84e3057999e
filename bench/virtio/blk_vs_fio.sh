#!/bin/sh
# virtio-blk (driven from the host side, io_uring engine) beside fio's io_uring engine, on the
# same file in the same run: 4 KiB random reads and writes at several queue depths.
#
#   bench/virtio/blk_vs_fio.sh <build-dir> [disk-file]
#
# Both use buffered I/O on the same file and fio does not drop its page cache (invalidate=0),
# so both measure the software path over cached data, not the disk.
set -eu
build=${1:?usage: blk_vs_fio.sh <build-dir> [disk-file]}
disk=${2:-/tmp/flick-blk-bench.img}
runtime=${RUNTIME:-3}
bench="$build/bench/virtio/virtio_blk_bench"
[ -x "$bench" ] || { echo "build the virtio_blk_bench target in $build first" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

FLICK_BENCH_DISK=$disk "$bench" --benchmark_filter='BM_BlkRand(Read|Write)/' \
  --benchmark_min_time="$runtime" --benchmark_format=json > "$tmp/flick.json"

for rw in randread randwrite; do
  for qd in 1 4 16 64; do
    fio --name=fio --filename="$disk" --ioengine=io_uring --rw=$rw --bs=4k --iodepth=$qd \
      --direct=0 --invalidate=0 --size=256M --time_based --runtime="$runtime" --randrepeat=0 \
      --output-format=json > "$tmp/fio-$rw-$qd.json"
  done
done

python3 - "$tmp" <<'PY'
import json, sys, os
tmp = sys.argv[1]
flick = {}
for b in json.load(open(os.path.join(tmp, "flick.json")))["benchmarks"]:
    name, qd = b["name"].split("/")[:2]
    rw = "randread" if "Read" in name else "randwrite"
    flick[(rw, int(qd))] = b["IOPS"]
print(f"{'workload':<10} {'QD':>3} {'flick IOPS':>12} {'fio IOPS':>12} {'flick/fio':>9}")
for rw in ("randread", "randwrite"):
    for qd in (1, 4, 16, 64):
        j = json.load(open(os.path.join(tmp, f"fio-{rw}-{qd}.json")))["jobs"][0]
        fio = j["read" if rw == "randread" else "write"]["iops"]
        f = flick.get((rw, qd), 0.0)
        print(f"{rw:<10} {qd:>3} {f:>12.0f} {fio:>12.0f} {f / fio if fio else 0:>9.2f}")
PY
