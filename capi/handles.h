// Handles as table indices with a generation count: the C caller holds a token (tag | generation
// | index + 1, cast to an opaque pointer type), never a pointer to the object. A token whose
// generation is not its slot's current one was freed: that is detected by comparing numbers,
// without touching freed memory. Objects are held by shared_ptr, so a call in flight keeps
// its object alive while another thread frees the handle.
#pragma once

#include "boundary.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace flick::capi {

static_assert(sizeof(void*) == 8, "handle tokens need 64-bit pointers");

template <class T>
class HandleTable {
 public:
  // `tag` tells tables apart (a host token given as a machine is caught); `kind` names the
  // handle in messages ("machine").
  HandleTable(uint8_t tag, const char* kind) : tag_(tag), kind_(kind) {}

  template <class Handle>
  Handle* add(std::shared_ptr<T> object) {
    std::lock_guard lk(mu_);
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<uint32_t>(slots_.size());
      slots_.push_back(Slot{});
    }
    slots_[index].object = std::move(object);
    const uint64_t token = uint64_t{tag_} << 56 | uint64_t{slots_[index].generation} << 32 | (uint64_t{index} + 1);
    return reinterpret_cast<Handle*>(static_cast<uintptr_t>(token));
  }

  // The object, or null with the last error set (FLICK_EINVAL) and *rc its code.
  template <class Handle>
  std::shared_ptr<T> find(const Handle* handle, const char* fn, int* rc) const {
    std::lock_guard lk(mu_);
    Slot* slot = nullptr;
    if (!check(handle, fn, rc, &slot)) return nullptr;
    return slot->object;
  }

  // Takes the object out of the table: the token is stale from now on.
  template <class Handle>
  std::shared_ptr<T> remove(const Handle* handle, const char* fn, int* rc) {
    std::lock_guard lk(mu_);
    Slot* slot = nullptr;
    if (!check(handle, fn, rc, &slot)) return nullptr;
    auto object = std::move(slot->object);
    slot->object.reset();
    slot->generation = slot->generation == kMaxGeneration ? 1 : slot->generation + 1;
    free_.push_back(static_cast<uint32_t>(slot - slots_.data()));
    return object;
  }

 private:
  static constexpr uint32_t kMaxGeneration = (1u << 24) - 1;
  struct Slot {
    std::shared_ptr<T> object;
    uint32_t generation = 1;
  };

  template <class Handle>
  bool check(const Handle* handle, const char* fn, int* rc, Slot** slot) const {
    const auto token = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle));
    const auto refuse = [&](const std::string& why) {
      *rc = fail_invalid(std::string(fn) + ": " + kind_ + why);
      return false;
    };
    if (token == 0) return refuse(" is NULL");
    const uint64_t index = (token & 0xffffffffu) - 1;
    if (token >> 56 != tag_ || index >= slots_.size()) return refuse(std::string(" is not a ") + kind_ + " handle");
    auto& s = const_cast<Slot&>(slots_[index]);
    if (((token >> 32) & kMaxGeneration) != s.generation || !s.object) return refuse(" handle was already freed");
    *slot = &s;
    return true;
  }

  const uint8_t tag_;
  const char* const kind_;
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

}  // namespace flick::capi
