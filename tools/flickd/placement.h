// Placement: whether a machine fits this host before it starts. Machines hold their guest's
// CPUs and memory while starting, started or stopping (as the store says, whoever started
// them); a start through flickd also holds them from its check until the store shows it.
// A start that does not fit fails fast with 503 insufficient_capacity, and nothing changes:
// retrying is the client's job, as Fly says.
#pragma once

#include <flick/machine.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace flick::flickd {

struct Capacity {
  uint32_t cpus = 0;       // guest vCPUs that may run at once
  uint64_t memory_mb = 0;  // guest memory that may be held at once
  // The defaults: 4 guest vCPUs per host CPU (vCPUs are threads that mostly wait), and the
  // host's memory (guest memory is not overcommitted).
  static Capacity of_this_host();
};

class Placement {
 public:
  Placement(Host& host, Capacity capacity) : host_(host), capacity_(capacity) {}

  // Held until dropped: by then the start has either failed or is in the store.
  class Reservation {
   public:
    Reservation(Placement* p, uint64_t key) : p_(p), key_(key) {}
    Reservation(Reservation&& o) noexcept : p_(std::exchange(o.p_, nullptr)), key_(o.key_) {}
    Reservation& operator=(Reservation&&) = delete;
    ~Reservation();

   private:
    Placement* p_;
    uint64_t key_;
  };

  // Reserves `guest` for machine `id` (empty: a machine not made yet); what `id` holds now
  // is not counted, so an update that grows a running machine asks only for the difference.
  // Throws ApiError 503 insufficient_capacity when it does not fit.
  Reservation reserve(const std::string& id, const GuestConfig& guest);

  const Capacity& capacity() const { return capacity_; }

 private:
  struct Held {
    std::string id;
    uint32_t cpus;
    uint64_t memory_mb;
  };
  Host& host_;
  const Capacity capacity_;
  std::mutex mu_;
  uint64_t next_ = 0;
  std::map<uint64_t, Held> pending_;
};

}  // namespace flick::flickd
