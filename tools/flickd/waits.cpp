// WaitList (waits.h).
#include "waits.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace flick::flickd {

namespace {

bool settled(MachineState s) {
  return s == MachineState::created || s == MachineState::started || s == MachineState::stopped ||
         s == MachineState::failed || s == MachineState::destroyed;
}

std::string joined(const std::vector<std::string>& states) {
  std::string out;
  for (const auto& s : states) out += (out.empty() ? "" : "|") + s;
  return out;
}

}  // namespace

WaitList::WaitList(Host& host) : host_(host), thread_([this] { run(); }) {}

WaitList::~WaitList() {
  shutdown();
  thread_.join();
}

std::optional<HttpResponse> WaitList::check(const PendingWait& w, std::chrono::steady_clock::time_point now) {
  auto m = host_.get(w.machine, {}, w.app);
  // A machine the store no longer has is as destroyed as can be.
  const MachineState state = m ? (*m)->state() : MachineState::destroyed;
  if (!m && m.error().code != Errc::not_found) return std::nullopt;  // try again on the next round
  const std::string name = to_string(state);
  bool reached = false;
  for (const auto& want : w.states) reached |= want == name || (want == "settled" && settled(state));
  if (reached) {
    nlohmann::json body{{"ok", true}, {"state", name}};
    if (m) body["version"] = (*m)->version();
    return HttpResponse{200, body.dump()};
  }
  if (state == MachineState::destroyed)
    return HttpResponse{412, nlohmann::json{{"error", "failed_precondition: machine is destroyed, it cannot become " +
                                                          joined(w.states)}}
                                 .dump()};
  if (now >= w.deadline)
    return HttpResponse{408, nlohmann::json{{"error", "deadline_exceeded: machine failed to reach desired state, " +
                                                          joined(w.states) + ", currently " + name}}
                                 .dump()};
  return std::nullopt;
}

void WaitList::add(PendingWait wait) {
  if (auto answer = check(wait, std::chrono::steady_clock::now())) return wait.respond(std::move(*answer));
  std::lock_guard lock(mu_);
  if (closing_) return wait.respond({503, R"({"error":"unavailable: flickd is stopping"})"});
  pending_.push_back(std::move(wait));
  cv_.notify_all();
}

void WaitList::shutdown() {
  std::vector<PendingWait> left;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    left.swap(pending_);
  }
  cv_.notify_all();
  for (auto& w : left) w.respond({503, R"({"error":"unavailable: flickd is stopping"})"});
}

void WaitList::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (closing_) return;
    // Checked without the lock, so that add() never waits behind the store.
    std::vector<PendingWait> round;
    round.swap(pending_);
    lock.unlock();
    std::vector<PendingWait> still;
    const auto now = std::chrono::steady_clock::now();
    for (auto& w : round) {
      if (auto answer = check(w, now)) w.respond(std::move(*answer));
      else still.push_back(std::move(w));
    }
    lock.lock();
    if (closing_) {
      lock.unlock();
      for (auto& w : still) w.respond({503, R"({"error":"unavailable: flickd is stopping"})"});
      return;
    }
    pending_.insert(pending_.end(), std::make_move_iterator(still.begin()), std::make_move_iterator(still.end()));
  }
}

}  // namespace flick::flickd
