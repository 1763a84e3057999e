// libFuzzer target: arbitrary bytes as a layer (any compression libarchive detects), applied
// to a FileTree. Hostile tar input must only ever produce an Error, never a crash or a hang.
#include "image/content_spool.h"
#include "image/file_tree.h"
#include "image/layer_reader.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  flick::BuildLimits limits;
  limits.max_entries = 4096;
  limits.max_total_bytes = 64 << 20;
  // Odd inputs also run without a spool, so both data paths are covered.
  auto spool = flick::image::ContentSpool::create("/tmp");
  flick::image::FileTree tree(limits, (size % 2 && spool) ? &*spool : nullptr);
  for (uint32_t layer = 0; layer < 2; ++layer) {  // twice: whiteouts and links hit the first copy
    auto reader = flick::image::LayerReader::open_memory({data, size}, "fuzz");
    if (!reader) return 0;
    if (!tree.apply_layer(*reader, layer)) return 0;
  }
  tree.finish();
  return 0;
}
