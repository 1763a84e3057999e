// Interrupt: an injected interrupt line. Devices raise it without knowing how it reaches the
// guest (an irqfd into KVM's IOAPIC, a test counter, ...).
#pragma once

namespace flick {

class Interrupt {
 public:
  virtual ~Interrupt() = default;
  // Raises an edge on the line. Safe to call from any thread.
  virtual void trigger() = 0;
};

}  // namespace flick
