// WaitList: Fly's long-polling `GET /machines/{id}/wait`, without a thread per wait. Pending
// waits are kept here and one thread looks at their machines' states in the store every
// 100 ms (any process may move a machine; each machine is read once a round), answering each when its machine reaches a wanted
// state (200) or its deadline passes (408), as Fly's wait does.
#pragma once

#include "http_server.h"

#include <flick/machine.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace flick::flickd {

struct PendingWait {
  std::string app;
  std::string machine;              // id
  std::vector<std::string> states;  // Fly's names: started, stopped, failed, destroyed, settled, ...
  uint64_t version = 0;             // wait for this config version (0: whichever is current)
  uint64_t after_event = 0;         // answer only once an event later than this one happened
  std::chrono::steady_clock::time_point deadline;
  Respond respond;
};

class WaitList {
 public:
  explicit WaitList(Host& host);
  ~WaitList();  // shutdown()

  // Answers at once when the machine is already in a wanted state (or gone), else keeps it.
  void add(PendingWait wait);
  // Answers every pending wait with 503 and every later one too.
  void shutdown();

 private:
  // A machine as the store has it now (none: look again later).
  struct Observed {
    MachineState state = MachineState::destroyed;  // also for a machine the store no longer has
    uint64_t version = 0;                          // 0: gone
    uint64_t last_event = 0;                       // the latest event's id
  };
  std::optional<Observed> observe(const PendingWait& w);
  // The answer for `w`, if it has one.
  static std::optional<HttpResponse> answer(const PendingWait& w, const Observed& seen,
                                            std::chrono::steady_clock::time_point now);
  void run();

  Host& host_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PendingWait> pending_;
  bool closing_ = false;
  std::thread thread_;
};

}  // namespace flick::flickd
