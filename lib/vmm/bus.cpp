#include "vmm/bus.h"

#include "base/hex.h"

namespace flick::vmm {

Result<void> Bus::insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t len) {
  uint64_t end;
  if (len == 0 || __builtin_add_overflow(base, len, &end))
    return make_error(Errc::invalid_argument, name_ + " bus: empty or wrapping range");
  auto next = ranges_.lower_bound(base);
  bool overlaps = (next != ranges_.end() && next->first < end);
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len > base) overlaps = true;
  }
  if (overlaps)
    return make_error(Errc::invalid_argument,
                      name_ + " bus: range " + hex(base) + "+" + hex(len) + " overlaps another device");
  ranges_.emplace(base, Entry{len, std::move(device)});
  return {};
}

const std::pair<const uint64_t, Bus::Entry>* Bus::find(uint64_t addr, uint64_t size) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return nullptr;
  --it;
  uint64_t off = addr - it->first;
  if (off >= it->second.len || size > it->second.len - off) return nullptr;
  return &*it;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  const auto* e = find(addr, data.size());
  if (!e) return false;
  e->second.device->read(addr - e->first, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const auto* e = find(addr, data.size());
  if (!e) return false;
  e->second.device->write(addr - e->first, data);
  return true;
}

}  // namespace flick::vmm
