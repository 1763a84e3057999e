#include "vmm/state_dump.h"

#include "base/fd.h"
#include "base/log.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

namespace flick::vmm {
namespace {

// The dump thread runs only while VMs are registered (so a process's thread count goes back
// to what it was when its last VM ends); the signal handler and its pipe stay installed.
struct Registry {
  std::mutex lifecycle_mu;  // add/remove, starting and joining the thread; never taken by it
  std::mutex mu;            // the entries; held for a whole dump so a VM cannot go away in one
  std::map<uint64_t, std::function<std::string()>> entries;
  uint64_t next_id = 1;
  bool stop = false;
  std::thread thread;
  int wake_rd = -1, wake_wr = -1;  // -1 when dumps are off
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: the handler may run during exit()
  return *r;
}

void dump_all(Registry& r) {
  std::string out = "flick-dump: process " + std::to_string(::getpid()) + ", " +
                    std::to_string(r.entries.size()) + " VM(s)\n";
  for (auto& [id, describe] : r.entries) {
    std::string text = describe();
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      out += "flick-dump: vm " + std::to_string(id) + ": " + text.substr(pos, end - pos) + "\n";
      pos = end + 1;
    }
  }
  out += "flick-dump: end\n";
  write_all(STDERR_FILENO, out);
}

void drain(int fd) {
  char buf[64];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

void dump_thread(Registry& r) {
  pthread_setname_np(pthread_self(), "flick-dump");
  drain(r.wake_rd);  // signals that arrived while no VM was registered
  for (;;) {
    pollfd p{r.wake_rd, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) return;
    drain(r.wake_rd);
    std::lock_guard lk(r.mu);
    if (r.stop) return;
    dump_all(r);
  }
}

// Installs the handler once, if $FLICK_DUMP_SIGNAL asks for it. The handler only writes a
// byte to a pipe (async-signal-safe); the dump thread does the rest.
void install_once(Registry& r) {
  static std::once_flag once;
  std::call_once(once, [&r] {
    const char* name = std::getenv("FLICK_DUMP_SIGNAL");
    if (!name || !*name) return;
    int sig = parse_signal_name(name);
    if (sig == 0) {
      LOG_WARN("FLICK_DUMP_SIGNAL=%s names no signal; state dumps are off", name);
      return;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return;
    r.wake_rd = fds[0];
    r.wake_wr = fds[1];
    struct sigaction sa{};
    sa.sa_handler = [](int) {
      int saved = errno;
      char c = 1;
      (void)!::write(registry().wake_wr, &c, 1);
      errno = saved;
    };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, nullptr);
  });
}

}  // namespace

int parse_signal_name(const std::string& text) {
  if (text.empty()) return 0;
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    int n = std::atoi(text.c_str());
    return n > 0 && n < NSIG ? n : 0;
  }
  std::string name = text.rfind("SIG", 0) == 0 ? text.substr(3) : text;
  for (int i = 1; i < NSIG; ++i) {
    const char* abbrev = sigabbrev_np(i);
    if (abbrev && name == abbrev) return i;
  }
  return 0;
}

StateDumpRegistration StateDumpRegistration::add(std::function<std::string()> describe) {
  auto& r = registry();
  install_once(r);
  if (r.wake_rd < 0) return {};
  std::lock_guard life(r.lifecycle_mu);
  uint64_t id;
  {
    std::lock_guard lk(r.mu);
    id = r.next_id++;
    r.entries.emplace(id, std::move(describe));
    r.stop = false;
  }
  if (!r.thread.joinable()) {
    // The thread blocks every signal, so the handler never runs on it.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      r.thread = std::thread(dump_thread, std::ref(r));
    } catch (const std::system_error&) {
      LOG_WARN("cannot start the state dump thread; state dumps are off for now");
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  return StateDumpRegistration(id);
}

StateDumpRegistration& StateDumpRegistration::operator=(StateDumpRegistration&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}

void StateDumpRegistration::reset() {
  if (id_ == 0) return;
  auto& r = registry();
  std::lock_guard life(r.lifecycle_mu);
  bool last;
  {
    std::lock_guard lk(r.mu);
    r.entries.erase(id_);
    last = r.entries.empty();
    if (last) r.stop = true;
  }
  id_ = 0;
  if (last && r.thread.joinable()) {
    char c = 0;
    (void)!::write(r.wake_wr, &c, 1);
    r.thread.join();
  }
}

}  // namespace flick::vmm
