#include "placement.h"

#include "api_support.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace flick::flickd {

Capacity Capacity::of_this_host() {
  Capacity c;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  c.cpus = static_cast<uint32_t>(cpus > 0 ? cpus : 1) * 4;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    uint64_t kib = 0;
    meminfo >> kib;
    if (key == "MemTotal:") c.memory_mb = kib / 1024;
    meminfo.ignore(64, '\n');
  }
  return c;
}

Placement::Reservation::~Reservation() {
  if (!p_) return;
  std::lock_guard lk(p_->mu_);
  p_->pending_.erase(key_);
}

Placement::Reservation Placement::reserve(const std::string& id, const GuestConfig& guest) {
  Host::ListFilter running;
  running.states = {MachineState::starting, MachineState::started, MachineState::stopping};
  std::lock_guard lk(mu_);  // the store read and the check, one start at a time
  uint64_t cpus = guest.cpus, memory = guest.memory_mb;
  for (const auto& m : take(host_.list(running))) {
    if (m->id() == id) continue;
    cpus += m->config().guest.cpus;
    memory += m->config().guest.memory_mb;
  }
  for (const auto& [key, held] : pending_) {
    if (held.id == id && !id.empty()) continue;
    cpus += held.cpus;
    memory += held.memory_mb;
  }
  if (cpus > capacity_.cpus || memory > capacity_.memory_mb) {
    std::ostringstream why;
    why << "insufficient_capacity: this host has room for " << capacity_.cpus << " guest CPUs and "
        << capacity_.memory_mb << " MB of guest memory; with this machine (" << guest.cpus << " CPUs, "
        << guest.memory_mb << " MB) its machines would need " << cpus << " and " << memory << " MB";
    throw ApiError{503, why.str(), "insufficient_capacity"};
  }
  const uint64_t key = next_++;
  pending_[key] = {id, guest.cpus, guest.memory_mb};
  return {this, key};
}

}  // namespace flick::flickd
