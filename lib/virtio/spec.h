// Constants and wire structures from the virtio 1.2 specification (modern, split rings, MMIO).
#pragma once

#include <cstdint>

namespace flick::virtio {

// §2.1 device status bits.
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// §6 reserved feature bits.
inline constexpr uint64_t kFeatureRingIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFeatureRingEventIdx = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// §5 device IDs.
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceRng = 4;
inline constexpr uint32_t kDeviceVsock = 19;

// §2.7.5 split virtqueue descriptor flags.
inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;

// §2.7.7 / §2.7.10 notification suppression flags.
inline constexpr uint16_t kAvailNoInterrupt = 1;
inline constexpr uint16_t kUsedNoNotify = 1;

// §2.7.2: split queue sizes are powers of two up to 32768.
inline constexpr uint32_t kMaxQueueSize = 32768;

// §2.7.5 split virtqueue layout.
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

// §4.2.2 MMIO device register layout (version 2).
namespace mmio {
inline constexpr uint32_t kMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kVendorId = 0x4b43494c;  // "LICK": any value the driver ignores

inline constexpr uint64_t kMagicValue = 0x000;
inline constexpr uint64_t kVersionReg = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorIdReg = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac;
inline constexpr uint64_t kShmLenLow = 0x0b0;
inline constexpr uint64_t kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8;
inline constexpr uint64_t kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;
inline constexpr uint64_t kWindowSize = 0x1000;

inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;
}  // namespace mmio

}  // namespace flick::virtio
