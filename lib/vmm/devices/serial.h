// An 8250/16550A UART (COM1): output to an injected sink, input pushed in by the host, THR-empty
// and data-ready interrupts as the Linux 8250 driver expects.
#pragma once

#include "base/bus_device.h"
#include "base/interrupt.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace flick::vmm {

class Serial : public BusDevice {
 public:
  using Sink = std::function<void(std::span<const uint8_t>)>;
  Serial(std::shared_ptr<Interrupt> irq, Sink sink);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues bytes for the guest to read; returns how many fit (the FIFO is bounded).
  size_t push_input(std::span<const uint8_t> bytes);

  static constexpr size_t kInputCapacity = 4096;

  // Registers and unread input, for snapshots.
  struct State {
    uint8_t ier, lcr, mcr, scr, dll, dlm, msr;
    bool thr_empty_pending;
    std::vector<uint8_t> rx;
  };
  State save();
  void load(const State& state);

 private:
  uint8_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint8_t v);
  uint8_t iir() const;
  bool interrupt_pending() const;
  void update_interrupt(bool was_pending);

  std::shared_ptr<Interrupt> irq_;
  Sink sink_;
  std::mutex mu_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0, msr_ = 0xb0;
  bool thr_empty_pending_ = false;
};

}  // namespace flick::vmm
