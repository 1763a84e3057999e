// Fuzzes what a guest can do to a whole device: a sequence of MMIO register accesses to an
// MmioTransport in front of a real device (virtio-blk on the synchronous engine, virtio-rng or
// virtio-vsock), with the rings, descriptors and requests in guest memory from the input. The
// device's I/O thread processes whatever the "driver" set up; the input ends with a reset.
#include "base/interrupt.h"
#include "fuzz_memory.h"
#include "virtio/block/block_device.h"
#include "virtio/mmio_transport.h"
#include "virtio/rng_device.h"
#include "virtio/spec.h"
#include "virtio/vsock/vsock_device.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

using namespace flick;
using namespace flick::virtio;

namespace {

class NullInterrupt : public Interrupt {
 public:
  void trigger() override {}
};

struct Devices {
  std::shared_ptr<VirtioDevice> dev[3];
  std::unique_ptr<MmioTransport> transport[3];
};

Devices& devices() {
  static Devices d = [] {
    Devices out;
    std::string disk = "/tmp/flick-fuzz-disk-" + std::to_string(::getpid());
    int fd = ::open(disk.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) std::abort();
    ::close(fd);
    BlockDeviceOptions b;
    b.path = disk;
    b.engine = BlockEngine::Kind::sync;
    b.queue_size = 16;
    b.serial = "fuzz";
    out.dev[0] = BlockDevice::open(b).value();
    ::unlink(disk.c_str());  // the open fd keeps it
    out.dev[1] = std::make_shared<RngDevice>(16);
    out.dev[2] = VsockDevice::create({3, "/tmp/flick-fuzz-vsock-" + std::to_string(::getpid()), 16, 8}).value();
    auto irq = std::make_shared<NullInterrupt>();
    for (int i = 0; i < 3; i++)
      out.transport[i] = MmioTransport::create(out.dev[i], &fuzz::memory(), irq).value();
    return out;
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // [device][memory length: 2][memory bytes][ops: {kind, offset: 2, value: 4}...]
  if (size < 3) return 0;
  MmioTransport& t = *devices().transport[data[0] % 3];
  size_t mem_len = std::min<size_t>(size - 3, (data[1] | data[2] << 8) & 0x3fff);
  fuzz::load(data + 3, mem_len);
  const uint8_t* op = data + 3 + mem_len;
  const uint8_t* end = data + size;
  for (; end - op >= 7; op += 7) {
    uint8_t kind = op[0];
    uint64_t offset = (op[1] | op[2] << 8) & 0x1ff;
    size_t width = size_t{1} << (kind >> 1 & 3);  // 1, 2, 4 or 8 bytes
    uint8_t buf[8];
    std::memcpy(buf, op + 3, 4);
    std::memcpy(buf + 4, op + 3, 4);
    if (kind & 1) {
      t.write(offset, std::span<const uint8_t>(buf, width));
    } else {
      t.read(offset, std::span<uint8_t>(buf, width));
    }
  }
  uint8_t zero[4] = {};
  t.write(mmio::kStatus, zero);  // reset: joins the device thread before the next input
  return 0;
}
