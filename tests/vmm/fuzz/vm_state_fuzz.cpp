// libFuzzer target for VM state files: a restore reads a file from disk that may be damaged
// or crafted. The first byte picks how the input is used: as the whole file (header, length
// and checksum checks), or as a payload framed with a valid header and checksum, read record by
// record as Vm::restore reads it. Either way: an error, never a crash or an out-of-bounds read.
#include "vmm/snapshot.h"

#include <cstddef>
#include <cstdint>
#include <vector>

using namespace flick;
using namespace flick::vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    file.assign(data + 1, data + size);
  } else {
    // The writer's framing around the fuzzer's records: each record is a length and bytes,
    // so the payload is the input cut into records of the lengths its bytes give.
    StateWriter w;
    for (size_t pos = 1; pos < size;) {
      const size_t len = std::min<size_t>(data[pos] * 32u, size - pos - 1);
      w.put_bytes({data + pos + 1, len});
      pos += 1 + len;
    }
    file = w.finish();
  }
  auto r = StateReader::parse(std::move(file), "fuzz");
  if (!r) return 0;
  if (!r->get_string() || !r->get_string()) return 0;
  if (!r->get_bytes()) return 0;
  if (!read_vm_state(*r)) return 0;
  for (int i = 0; i < 4; ++i)
    if (!read_vcpu_state(*r)) return 0;
  (void)r->expect_end();
  return 0;
}
