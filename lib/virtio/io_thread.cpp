#include "virtio/io_thread.h"

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <thread>

namespace flick::virtio {

void log_line(const std::string& what) { std::fprintf(stderr, "flick: %s\n", what.c_str()); }

Result<std::unique_ptr<IoThread>> IoThread::create(std::string name, bool allow_io_uring) {
  std::unique_ptr<IoThread> t(new IoThread());
  t->name_ = std::move(name);
  FLICK_TRY_ASSIGN(t->wake_, EventFd::create());
  if (allow_io_uring) {
    auto ring = std::make_unique<io_uring>();
    int r = io_uring_queue_init(64, ring.get(), 0);
    if (r == 0) {
      t->ring_ = std::move(ring);
      t->backend_ = Backend::io_uring;
    } else {
      log_line(t->name_ + ": io_uring unavailable (" + std::strerror(-r) +
               "), using epoll for its event loop");
    }
  }
  if (t->backend_ == Backend::epoll) {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return sys_error("creating an epoll instance for " + t->name_, errno);
    t->epoll_.reset(fd);
  }
  IoThread* self = t.get();
  FLICK_TRY_ASSIGN(t->wake_id_, t->watch(t->wake_.fd(), [self] {
    (void)self->wake_.consume();
    self->drain_posted();
  }));
  return t;
}

IoThread::~IoThread() {
  stop();
  if (ring_) io_uring_queue_exit(ring_.get());
}

Result<uint64_t> IoThread::watch(int fd, Handler handler, bool writable) {
  uint64_t id = next_id_++;
  auto [it, inserted] = watches_.emplace(id, Watch{fd, writable, std::move(handler), {}});
  (void)inserted;
  if (auto r = arm(id, it->second); !r) {
    watches_.erase(it);
    return std::move(r).error();
  }
  return id;
}

io_uring_sqe* IoThread::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  return sqe;
}

Result<void> IoThread::submit(const std::function<void(io_uring_sqe*)>& prep,
                              std::function<void(int)> done) {
  if (!ring_) return make_error(Errc::unsupported, name_ + ": no io_uring to submit to");
  io_uring_sqe* sqe = next_sqe();
  if (!sqe) return make_error(Errc::busy, name_ + ": io_uring submission queue full");
  uint64_t id = next_id_++;
  prep(sqe);
  io_uring_sqe_set_data64(sqe, id);
  ops_.emplace(id, std::move(done));
  return {};
}

Result<void> IoThread::arm(uint64_t id, Watch& w) {
  unsigned mask = w.writable ? POLLOUT : POLLIN;
  if (ring_) {
    io_uring_sqe* sqe = next_sqe();
    if (!sqe) return make_error(Errc::busy, name_ + ": io_uring submission queue full");
    io_uring_prep_poll_add(sqe, w.fd, mask);
    io_uring_sqe_set_data64(sqe, id);
    return {};
  }
  int dup = ::fcntl(w.fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return sys_error(name_ + ": duplicating fd " + std::to_string(w.fd), errno);
  w.epoll_fd.reset(dup);
  epoll_event ev{};
  ev.events = w.writable ? EPOLLOUT : EPOLLIN;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, dup, &ev) != 0)
    return sys_error(name_ + ": watching fd " + std::to_string(w.fd), errno);
  return {};
}

void IoThread::unwatch(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  if (ring_) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(ring_.get())) {
      io_uring_prep_poll_remove(sqe, id);
      io_uring_sqe_set_data64(sqe, 0);
    }
  } else {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.epoll_fd.get(), nullptr);
  }
  watches_.erase(it);
}

Result<void> IoThread::run_until_idle(std::function<size_t()> step, const std::string& what,
                                      std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto answer = std::make_shared<std::promise<size_t>>();
    auto busy = answer->get_future();
    post([step, answer] { answer->set_value(step()); });
    if (busy.wait_until(deadline) != std::future_status::ready)
      return make_error(Errc::timeout, what + ": the I/O thread did not answer within " +
                                           std::to_string(limit.count()) + " ms");
    if (busy.get() == 0) return {};
    if (std::chrono::steady_clock::now() > deadline)
      return make_error(Errc::timeout, what + ": still busy after " + std::to_string(limit.count()) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void IoThread::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  (void)wake_.signal();
}

void IoThread::drain_posted() {
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard lock(posted_mu_);
    fns.swap(posted_);
  }
  for (auto& fn : fns) fn();
}

Result<void> IoThread::start() {
  if (thread_.joinable()) return make_error(Errc::busy, name_ + ": I/O thread already running");
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), name_.substr(0, 15).c_str());
  return {};
}

void IoThread::stop() {
  if (thread_.joinable()) {
    stopping_ = true;
    (void)wake_.signal();
    thread_.join();
  }
  // Operations in flight may still read or write guest memory: wait them out.
  while (ring_ && !ops_.empty()) {
    io_uring_submit(ring_.get());
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe(ring_.get(), &cqe) < 0) break;
    ops_.erase(io_uring_cqe_get_data64(cqe));
    io_uring_cqe_seen(ring_.get(), cqe);
  }
}

void IoThread::dispatch(uint64_t id, bool error) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  (void)error;  // POLLERR/POLLHUP: the handler finds out from its own read or write
  Handler h = it->second.handler;  // the handler may unwatch itself
  h();
}

void IoThread::run() {
  if (ring_) {
    run_uring();
  } else {
    run_epoll();
  }
}

void IoThread::run_uring() {
  std::vector<std::pair<uint64_t, int>> done;
  while (!stopping_) {
    int r = io_uring_submit_and_wait(ring_.get(), 1);
    if (r < 0 && r != -EINTR && r != -EBUSY) {
      log_line(name_ + ": io_uring wait failed: " + std::strerror(-r));
      return;
    }
    done.clear();
    io_uring_cqe* cqe;
    unsigned head;
    io_uring_for_each_cqe(ring_.get(), head, cqe) {
      done.emplace_back(io_uring_cqe_get_data64(cqe), cqe->res);
    }
    io_uring_cq_advance(ring_.get(), static_cast<unsigned>(done.size()));
    for (auto [id, res] : done) {
      if (auto op = ops_.find(id); op != ops_.end()) {
        auto fn = std::move(op->second);
        ops_.erase(op);
        if (!stopping_) fn(res);
        continue;
      }
      if (id == 0 || res == -ECANCELED || stopping_) continue;
      dispatch(id, res < 0 || (res & (POLLERR | POLLHUP)));
      // Poll requests are one-shot: re-arm while the watch exists.
      if (auto it = watches_.find(id); it != watches_.end()) (void)arm(id, it->second);
    }
  }
}

void IoThread::run_epoll() {
  epoll_event events[32];
  while (!stopping_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_line(name_ + ": epoll_wait failed: " + std::strerror(errno));
      return;
    }
    for (int i = 0; i < n && !stopping_; i++)
      dispatch(events[i].data.u64, events[i].events & (EPOLLERR | EPOLLHUP));
  }
}

}  // namespace flick::virtio
