#include "vmm/devices/platform.h"

#include "base/log.h"
#include "vmm/layout.h"

#include <algorithm>

namespace flick::vmm {

void I8042::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 4 && data.size() == 1 && data[0] == 0xfe && sink_) sink_(PlatformEvent::reset);
}

void AcpiPowerDevice::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
}

void AcpiPowerDevice::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1 || !sink_) return;
  const uint8_t v = data[0];
  // Offsets within the device, which starts at the sleep control register.
  constexpr uint64_t kSleepControl = 0;
  constexpr uint64_t kReset = layout::kPioAcpiReset - layout::kPioAcpiSleepControl;
  if (offset == kSleepControl) {
    constexpr uint8_t kSlpEn = 0x20;
    const uint8_t slp_typ = (v >> 2) & 7;
    if ((v & kSlpEn) && slp_typ == layout::kAcpiS5SleepType) {
      sink_(PlatformEvent::power_off);
    } else if (v & kSlpEn) {
      LOG_INFO("guest asked for ACPI sleep type %u, which this machine does not support", slp_typ);
    }
  } else if (offset == kReset) {
    if (v == layout::kAcpiResetValue) sink_(PlatformEvent::reset);
  }
}

void BootTimer::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }

void BootTimer::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty() || data[0] != layout::kBootTimerMagic) return;
  const auto now = Clock::now().time_since_epoch();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      now - Clock::duration(start_ns_.load())).count();
  int64_t expected = -1;
  if (elapsed_ns_.compare_exchange_strong(expected, ns))
    LOG_INFO("guest boot timer: %lld us", static_cast<long long>(ns / 1000));
}

void PvPanic::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (!data.empty()) data[0] = kPanicked;  // the events this device reports
}

void PvPanic::write(uint64_t, std::span<const uint8_t> data) {
  if (!data.empty() && (data[0] & kPanicked)) {
    panicked_ = true;
    LOG_INFO("guest reported a kernel panic (pvpanic)");
  }
}

void IgnoredPorts::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
}

}  // namespace flick::vmm
