#include "vmm/devices/serial.h"

#include <algorithm>

namespace flick::vmm {
namespace {

// Register offsets and bits (16550A data sheet).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThri = 0x02, kIirRdi = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;

}  // namespace

Serial::Serial(std::shared_ptr<Interrupt> irq, Sink sink) : irq_(std::move(irq)), sink_(std::move(sink)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1) return;
  std::lock_guard lk(mu_);
  bool was = interrupt_pending();
  data[0] = read_reg(offset);
  update_interrupt(was);
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  uint8_t out = 0;
  bool emit = false;
  {
    std::lock_guard lk(mu_);
    bool was = interrupt_pending();
    if (offset == kData && !(lcr_ & kLcrDlab) && !(mcr_ & kMcrLoop)) {
      out = data[0];
      emit = true;
      thr_empty_pending_ = true;  // the byte leaves at once: THR is empty again
    } else {
      write_reg(offset, data[0]);
    }
    update_interrupt(was);
  }
  if (emit && sink_) sink_(std::span<const uint8_t>(&out, 1));
}

size_t Serial::push_input(std::span<const uint8_t> bytes) {
  std::lock_guard lk(mu_);
  bool was = interrupt_pending();
  size_t n = 0;
  for (uint8_t b : bytes) {
    if (rx_.size() >= kInputCapacity) break;
    rx_.push_back(b);
    ++n;
  }
  update_interrupt(was);
  return n;
}

Serial::State Serial::save() {
  std::lock_guard lk(mu_);
  return {ier_, lcr_, mcr_, scr_, dll_, dlm_, msr_, thr_empty_pending_, {rx_.begin(), rx_.end()}};
}

void Serial::load(const State& s) {
  std::lock_guard lk(mu_);
  bool was = interrupt_pending();
  ier_ = s.ier, lcr_ = s.lcr, mcr_ = s.mcr, scr_ = s.scr, dll_ = s.dll, dlm_ = s.dlm, msr_ = s.msr;
  thr_empty_pending_ = s.thr_empty_pending;
  rx_.assign(s.rx.begin(), s.rx.begin() + static_cast<ptrdiff_t>(std::min(s.rx.size(), kInputCapacity)));
  update_interrupt(was);
}

uint8_t Serial::read_reg(uint64_t offset) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_.empty()) return 0;
      {
        uint8_t b = rx_.front();
        rx_.pop_front();
        return b;
      }
    case kIer: return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
      uint8_t v = iir();
      if ((v & 0x0f) == kIirThri) thr_empty_pending_ = false;  // reading IIR clears THRE
      return v | kIirFifo;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return static_cast<uint8_t>((rx_.empty() ? 0 : kLsrDr) | kLsrThre | kLsrTemt);
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return msr_;
    case kScr: return scr_;
    default: return 0;
  }
}

void Serial::write_reg(uint64_t offset, uint8_t v) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = v;
      } else if (mcr_ & kMcrLoop) {
        if (rx_.size() < kInputCapacity) rx_.push_back(v);
        thr_empty_pending_ = true;
      }
      break;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = v;
      } else {
        // Enabling THRI while THR is empty raises the interrupt at once (16550A behaviour
        // the Linux driver relies on to start transmitting).
        if ((v & kIerThri) && !(ier_ & kIerThri)) thr_empty_pending_ = true;
        ier_ = v & 0x0f;
      }
      break;
    case kIir: break;  // FCR: FIFOs are always on, nothing to configure
    case kLcr: lcr_ = v; break;
    case kMcr: mcr_ = v & 0x1f; break;
    case kScr: scr_ = v; break;
    default: break;
  }
}

uint8_t Serial::iir() const {
  if ((ier_ & kIerRdi) && !rx_.empty()) return kIirRdi;
  if ((ier_ & kIerThri) && thr_empty_pending_) return kIirThri;
  return kIirNone;
}

bool Serial::interrupt_pending() const { return iir() != kIirNone; }

void Serial::update_interrupt(bool was_pending) {
  // The line is edge-triggered through an irqfd: raise it when an interrupt becomes pending.
  if (!was_pending && interrupt_pending() && irq_) irq_->trigger();
}

}  // namespace flick::vmm
