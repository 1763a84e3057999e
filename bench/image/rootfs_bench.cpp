// Times build_rootfs on real layers. The layers come from FLICK_BENCH_LAYERS (colon-separated
// tar paths, lowest first); the image is written to FLICK_BENCH_OUTPUT. compare-mkfs.sh sets
// both and times mkfs.ext4 -d on the same tree in the same run.
#include <flick/image.h>

#include <benchmark/benchmark.h>

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

}  // namespace

BENCHMARK_MAIN();
