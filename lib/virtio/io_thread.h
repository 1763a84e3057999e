// IoThread: the thread a virtio device does its work on, with an event loop over file
// descriptors (queue notify eventfds, a TAP device, sockets, an I/O engine's completion fd).
//
// The loop runs on io_uring (IORING_OP_POLL_ADD) and falls back to epoll when io_uring is
// unavailable (kernel.io_uring_disabled, seccomp, old kernels) or not wanted.
#pragma once

#include "base/event_fd.h"
#include "base/fd.h"

#include <flick/result.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct io_uring;
struct io_uring_sqe;

namespace flick::virtio {

// Writes a one-line diagnostic to stderr ("flick: <what>").
void log_line(const std::string& what);

class IoThread {
 public:
  using Handler = std::function<void()>;
  enum class Backend { io_uring, epoll };

  static Result<std::unique_ptr<IoThread>> create(std::string name, bool allow_io_uring = true);
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  Backend backend() const { return backend_; }

  // Calls `handler` on the I/O thread whenever `fd` is readable (or writable, with
  // `writable`). Level-triggered: the handler is called again while the condition holds.
  // Call before start() or on the I/O thread. Returns an id for unwatch().
  Result<uint64_t> watch(int fd, Handler handler, bool writable = false);
  void unwatch(uint64_t id);
  // Runs `fn` on the I/O thread soon; safe from any thread.
  void post(std::function<void()> fn);
  // Runs `step` on the I/O thread, again and again (1 ms apart), until it returns 0 (say,
  // the requests still in flight); from another thread, which waits. A timeout error names
  // `what` when that takes longer than `limit`.
  Result<void> run_until_idle(std::function<size_t()> step, const std::string& what,
                              std::chrono::milliseconds limit = std::chrono::seconds(30));

  // io_uring backend only (check backend()): queues the operation `prep` fills in; `done` gets
  // its result (cqe->res) on the I/O thread. Submitted with the loop's next wait, so a batch
  // of operations costs one system call. Call on the I/O thread. stop() waits for operations
  // still in flight (they may point into guest memory) without calling `done`.
  Result<void> submit(const std::function<void(io_uring_sqe*)>& prep, std::function<void(int)> done);

  Result<void> start();
  // Stops and joins the thread; handlers are not called after stop() returns.
  void stop();
  bool on_io_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Watch {
    int fd;
    bool writable;
    Handler handler;
    // epoll keys registrations by file descriptor: a second watch of the same fd (read and
    // write) registers a duplicate of it.
    UniqueFd epoll_fd;
  };
  IoThread() = default;
  Result<void> arm(uint64_t id, Watch& w);
  void run();
  void run_uring();
  void run_epoll();
  void dispatch(uint64_t id, bool error);
  void drain_posted();
  io_uring_sqe* next_sqe();

  std::string name_;
  Backend backend_ = Backend::epoll;
  std::unique_ptr<io_uring> ring_;
  UniqueFd epoll_;
  EventFd wake_;
  std::map<uint64_t, Watch> watches_;
  std::map<uint64_t, std::function<void(int)>> ops_;
  uint64_t next_id_ = 1;
  uint64_t wake_id_ = 0;
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace flick::virtio
