// Times build_rootfs on real layers. The layers come from FLICK_BENCH_LAYERS (colon-separated
// tar paths, lowest first); the image is written to FLICK_BENCH_OUTPUT. compare-mkfs.sh sets
// both and times mkfs.ext4 -d on the same tree in the same run. Beside it, the stages alone on
// the same layers: reading every entry through ISA-L and through libarchive's zlib, and
// SHA-256 of the compressed files.
#include <flick/image.h>

#include "image/layer_reader.h"
#include "image/sha256.h"

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

std::vector<std::filesystem::path> bench_layers() {
  std::vector<std::filesystem::path> out;
  const char* env = std::getenv("FLICK_BENCH_LAYERS");
  std::string s = env ? env : "";
  for (size_t pos = 0; pos < s.size();) {
    size_t colon = s.find(':', pos);
    if (colon == std::string::npos) colon = s.size();
    if (colon > pos) out.emplace_back(s.substr(pos, colon - pos));
    pos = colon + 1;
  }
  return out;
}

void BM_BuildRootfs(benchmark::State& state) {
  const auto layers = bench_layers();
  const char* out_env = std::getenv("FLICK_BENCH_OUTPUT");
  if (layers.empty() || !out_env) {
    state.SkipWithError("set FLICK_BENCH_LAYERS and FLICK_BENCH_OUTPUT (see bench/image/compare-mkfs.sh)");
    return;
  }
  flick::RootfsOptions options;
  if (const char* size = std::getenv("FLICK_BENCH_SIZE")) options.size_bytes = std::strtoull(size, nullptr, 10);
  flick::BuildStats stats;
  for (auto _ : state) {
    auto r = flick::build_rootfs(layers, out_env, options);
    if (!r) {
      state.SkipWithError(r.error().describe().c_str());
      return;
    }
    stats = *r;
  }
  state.counters["image_bytes"] = double(stats.image_bytes);
  state.counters["content_bytes"] = double(stats.content_bytes);
  state.counters["inodes"] = double(stats.inodes);
  state.counters["entries"] = double(stats.entries);
}
BENCHMARK(BM_BuildRootfs)->Unit(benchmark::kMillisecond)->UseRealTime();

// Every entry's data read and dropped: inflate plus tar parsing, no spool, no ext4.
void BM_ReadLayers(benchmark::State& state, flick::image::GzipInflater inflater) {
  const auto layers = bench_layers();
  if (layers.empty()) {
    state.SkipWithError("set FLICK_BENCH_LAYERS (see bench/image/compare-mkfs.sh)");
    return;
  }
  uint64_t bytes = 0;
  for (auto _ : state) {
    for (const auto& l : layers) {
      auto reader = flick::image::LayerReader::open_file(l, inflater);
      flick::Result<archive_entry*> e = reader ? reader->next() : reader.error();
      for (; e && *e; e = reader->next()) {
        auto r = reader->read_data([&](uint64_t, std::span<const uint8_t> b) -> flick::Result<void> {
          bytes += b.size();
          return {};
        });
        if (!r) e = r.error();
      }
      if (!e) {
        state.SkipWithError(e.error().describe().c_str());
        return;
      }
    }
  }
  state.SetBytesProcessed(int64_t(bytes));
}
BENCHMARK_CAPTURE(BM_ReadLayers, isal, flick::image::GzipInflater::isal)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_ReadLayers, zlib, flick::image::GzipInflater::libarchive)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Sha256Layers(benchmark::State& state) {
  const auto layers = bench_layers();
  std::vector<uint8_t> buf(1 << 20);
  uint64_t bytes = 0;
  for (auto _ : state) {
    for (const auto& l : layers) {
      int fd = ::open(l.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        state.SkipWithError(("opening " + l.string()).c_str());
        return;
      }
      flick::image::Sha256 h;
      for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0; bytes += uint64_t(n)) h.update(buf.data(), size_t(n));
      ::close(fd);
      benchmark::DoNotOptimize(h.digest());
    }
  }
  state.SetBytesProcessed(int64_t(bytes));
}
BENCHMARK(BM_Sha256Layers)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
