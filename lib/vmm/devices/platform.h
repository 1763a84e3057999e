// Small platform devices: the i8042 reset line, ACPI hardware-reduced sleep/reset registers,
// the boot timer, and a sink for ports the guest probes but nothing implements.
#pragma once

#include "base/bus_device.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace flick::vmm {

enum class PlatformEvent { power_off, reset };
using PlatformEventSink = std::function<void(PlatformEvent)>;

// Ports 0x60/0x64 (offsets 0 and 4): reads as "no data, input buffer empty"; 0xfe written to
// the command port pulses the CPU reset line.
class I8042 : public BusDevice {
 public:
  explicit I8042(PlatformEventSink sink) : sink_(std::move(sink)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PlatformEventSink sink_;
};

// Hardware-reduced ACPI (ACPI 6.4 §4.1): sleep control (offset 0), sleep status (1) and the
// reset register (2) named in the FADT.
class AcpiPowerDevice : public BusDevice {
 public:
  explicit AcpiPowerDevice(PlatformEventSink sink) : sink_(std::move(sink)) {}
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PlatformEventSink sink_;
};

// A guest write of the magic byte records the time since `start` (first write wins).
class BootTimer : public BusDevice {
 public:
  using Clock = std::chrono::steady_clock;
  // Times are measured from `start`, which the VM sets just before the first KVM_RUN.
  void set_start(Clock::time_point start) { start_ns_ = start.time_since_epoch().count(); }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;
  // Nanoseconds from start to the first magic write, or -1.
  int64_t elapsed_ns() const { return elapsed_ns_.load(); }

 private:
  std::atomic<Clock::rep> start_ns_{0};
  std::atomic<int64_t> elapsed_ns_{-1};
};

// pvpanic (QEMU's "QEMU0001" I/O device at one port): a guest with the pvpanic driver writes
// bit 0 when its kernel panics, so a following reset can be reported as a panic.
class PvPanic : public BusDevice {
 public:
  static constexpr uint8_t kPanicked = 1;
  void read(uint64_t, std::span<uint8_t> data) override;
  void write(uint64_t, std::span<const uint8_t> data) override;
  bool panicked() const { return panicked_.load(); }

 private:
  std::atomic<bool> panicked_{false};
};

// Absorbs accesses to ports Linux probes on every boot (POST code 0x80, the PIT speaker
// port 0x61, ...) so they are not reported as unhandled.
class IgnoredPorts : public BusDevice {
 public:
  void read(uint64_t, std::span<uint8_t> data) override;
  void write(uint64_t, std::span<const uint8_t>) override {}
};

}  // namespace flick::vmm
