// WaitList (waits.h).
#include "waits.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

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

std::optional<WaitList::Observed> WaitList::observe(const PendingWait& w) {
  auto m = host_.get(w.machine, {}, w.app);
  if (m) {
    const auto events = (*m)->events(1);
    return Observed{(*m)->state(), (*m)->version(), events.empty() ? 0 : events.back().id};
  }
  if (m.error().code == Errc::not_found) return Observed{};
  return std::nullopt;
}

std::optional<HttpResponse> WaitList::answer(const PendingWait& w, const Observed& seen,
                                             std::chrono::steady_clock::time_point now) {
  const std::string name = to_string(seen.state);
  if (w.version && seen.version > w.version)
    return HttpResponse{412, nlohmann::json{{"error", "failed_precondition: version " + std::to_string(w.version) +
                                                          " of the machine was replaced by version " +
                                                          std::to_string(seen.version)}}
                                 .dump()};
  bool reached = false;
  for (const auto& want : w.states) reached |= want == name || (want == "settled" && settled(seen.state));
  if (reached && (!w.after_event || seen.last_event > w.after_event || !seen.version)) {  // gone: after all
    nlohmann::json body{{"ok", true}, {"state", name}};
    if (seen.version) body["version"] = seen.version;
    if (seen.last_event) body["event_id"] = std::to_string(seen.last_event);
    return HttpResponse{200, body.dump()};
  }
  if (seen.state == MachineState::destroyed)
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
  if (auto seen = observe(wait))
    if (auto a = answer(wait, *seen, std::chrono::steady_clock::now())) return wait.respond(std::move(*a));
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
    std::map<std::string, std::optional<Observed>> seen;  // by machine id: read once a round
    const auto now = std::chrono::steady_clock::now();
    for (auto& w : round) {
      auto it = seen.find(w.machine);
      if (it == seen.end()) it = seen.emplace(w.machine, observe(w)).first;
      std::optional<HttpResponse> a = it->second ? answer(w, *it->second, now) : std::nullopt;
      if (!a && !it->second && now >= w.deadline)
        a = HttpResponse{503, R"({"error":"unavailable: the store could not be read"})"};
      if (a) w.respond(std::move(*a));
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
