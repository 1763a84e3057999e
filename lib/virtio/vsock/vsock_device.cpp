#include "virtio/vsock/vsock_device.h"

#include "virtio/spec.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace flick::virtio {
namespace {

// After read() returned 0: true when the peer closed both directions (POLLHUP), false when it
// only shut its write side.
bool peer_hung_up(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLHUP);
}

}  // namespace

namespace {
constexpr uint64_t kFeatureStream = 1ull << 0;  // §5.10.3
constexpr size_t kMaxControl = 256;             // queued control packets before TX stalls
constexpr size_t kMaxConnectLine = 32;          // "CONNECT 4294967295\n" fits easily
enum Queue { kRx = 0, kTx = 1, kEvent = 2 };

Result<UniqueFd> unix_socket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("creating a Unix socket", errno);
  return UniqueFd(fd);
}

bool fill_addr(const std::string& path, sockaddr_un* a) {
  std::memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (path.size() >= sizeof a->sun_path) return false;
  std::memcpy(a->sun_path, path.data(), path.size());
  return true;
}
}  // namespace

Result<std::shared_ptr<VsockDevice>> VsockDevice::create(VsockOptions options) {
  if (options.guest_cid <= vsock::kHostCid || options.guest_cid >= 0xffffffff)
    return make_error(Errc::invalid_argument, "vsock guest CID must be between 3 and 2^32-2");
  std::shared_ptr<VsockDevice> d(new VsockDevice());
  sockaddr_un addr;
  // Room for the "_<port>" suffix of guest-initiated connections too.
  if (!fill_addr(options.uds_path + "_4294967295", &addr))
    return make_error(Errc::invalid_argument, "vsock socket path is too long: " + options.uds_path);
  fill_addr(options.uds_path, &addr);
  FLICK_TRY_ASSIGN(d->listener_, unix_socket());
  ::unlink(options.uds_path.c_str());
  if (::bind(d->listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return sys_error("binding the vsock socket " + options.uds_path, errno);
  if (::listen(d->listener_.get(), 128) != 0)
    return sys_error("listening on the vsock socket " + options.uds_path, errno);
  d->config_.resize(8);
  std::memcpy(d->config_.data(), &options.guest_cid, 8);
  d->options_ = std::move(options);
  return d;
}

VsockDevice::~VsockDevice() {
  reset();
  ::unlink(options_.uds_path.c_str());
}

uint32_t VsockDevice::device_type() const { return kDeviceVsock; }
uint64_t VsockDevice::features() const {
  return kFeatureStream | kFeatureRingIndirectDesc | kFeatureRingEventIdx;
}
std::vector<uint16_t> VsockDevice::queue_max_sizes() const {
  return {options_.queue_size, options_.queue_size, options_.queue_size};
}

void VsockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  for (size_t i = 0; i < data.size(); i++)
    data[i] = offset + i < config_.size() ? config_[offset + i] : 0;
}

Result<void> VsockDevice::activate(GuestMemory& mem, uint64_t, std::vector<ActiveQueue> queues,
                                   std::shared_ptr<VirtioInterrupt> interrupt) {
  if (queues.size() != 3) return make_error(Errc::invalid_argument, "virtio-vsock has three queues");
  reset();
  FLICK_TRY_ASSIGN(thread_, IoThread::create("virtio-vsock"));
  mem_ = &mem;
  queues_ = std::move(queues);
  interrupt_ = std::move(interrupt);
  auto on_notify = [this](int fd, void (VsockDevice::*fn)()) {
    return [this, fd, fn] {
      uint64_t n;
      (void)!::read(fd, &n, sizeof n);
      if (fn) (this->*fn)();
    };
  };
  FLICK_TRY(thread_->watch(queues_[kRx].notify_fd, on_notify(queues_[kRx].notify_fd, &VsockDevice::process_rx)));
  FLICK_TRY(thread_->watch(queues_[kTx].notify_fd, on_notify(queues_[kTx].notify_fd, &VsockDevice::process_tx)));
  // The event queue only carries TRANSPORT_RESET (§5.10.6.5), which we never send.
  FLICK_TRY(thread_->watch(queues_[kEvent].notify_fd, on_notify(queues_[kEvent].notify_fd, nullptr)));
  FLICK_TRY(thread_->watch(listener_.get(), [this] { on_accept(); }));
  thread_->post([this] { process_tx(); });
  return thread_->start();
}

void VsockDevice::reset() {
  if (thread_) thread_->stop();
  thread_.reset();
  conns_.clear();
  host_requests_.clear();
  control_.clear();
  readable_.clear();
  queues_.clear();
  interrupt_.reset();
  mem_ = nullptr;
  tx_stalled_ = false;
}

uint32_t VsockDevice::peer_credit(const Connection& c) const {
  uint32_t in_flight = c.rx_cnt - c.peer_fwd_cnt;
  return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
}

void VsockDevice::send_control(const Connection& c, uint16_t op, uint32_t flags) {
  VsockHeader h{};
  h.src_cid = vsock::kHostCid;
  h.dst_cid = options_.guest_cid;
  h.src_port = c.host_port;
  h.dst_port = c.guest_port;
  h.type = vsock::kTypeStream;
  h.op = op;
  h.flags = flags;
  h.buf_alloc = kBufAlloc;
  h.fwd_cnt = c.fwd_cnt;
  control_.push_back(h);
}

void VsockDevice::send_rst_to(const VsockHeader& in) {
  VsockHeader h{};
  h.src_cid = vsock::kHostCid;
  h.dst_cid = options_.guest_cid;
  h.src_port = in.dst_port;
  h.dst_port = in.src_port;
  h.type = vsock::kTypeStream;
  h.op = vsock::kOpRst;
  control_.push_back(h);
}

void VsockDevice::watch_read(Key k, Connection& c) {
  if (c.read_watch || c.queued || c.host_eof || c.state != State::established) return;
  auto id = thread_->watch(c.sock.get(), [this, k] { on_socket_readable(k); });
  if (id) c.read_watch = *id;
}

void VsockDevice::close_connection(Key k, bool send_rst) {
  auto it = conns_.find(k);
  if (it == conns_.end()) return;
  Connection& c = it->second;
  if (c.read_watch) thread_->unwatch(c.read_watch);
  if (c.write_watch) thread_->unwatch(c.write_watch);
  if (send_rst) send_control(c, vsock::kOpRst);
  conns_.erase(it);
}

void VsockDevice::process_tx() {
  VirtQueue& q = queues_[kTx].queue;
  if (q.broken()) return;
  bool used = false;
  for (;;) {
    if (control_.size() >= kMaxControl) {
      tx_stalled_ = true;  // the guest is not taking replies: stop taking requests
      break;
    }
    auto popped = q.pop_or_enable_notification();
    if (!popped) {
      log_line("virtio-vsock: " + popped.error().describe() + "; device needs reset");
      interrupt_->device_failed();
      return;
    }
    if (!popped->has_value()) break;
    AvailableChain& a = **popped;
    if (a.chain) {
      if (auto p = parse_vsock_tx(*mem_, *a.chain)) handle_packet(*p);
    }
    (void)q.add_used(a.head, 0);
    used = true;
  }
  if (used && q.needs_interrupt()) interrupt_->used_buffer(kTx);
  process_rx();
}

void VsockDevice::handle_packet(const VsockTxPacket& p) {
  const VsockHeader& h = p.header;
  if (h.src_cid != options_.guest_cid || h.dst_cid != vsock::kHostCid) return;  // not for us
  if (h.type != vsock::kTypeStream) {
    send_rst_to(h);
    return;
  }
  Key k = key(h.src_port, h.dst_port);
  auto it = conns_.find(k);
  if (it == conns_.end()) {
    if (h.op == vsock::kOpRequest && conns_.size() < options_.max_connections) {
      // Guest-initiated: forward to <uds_path>_<port>.
      sockaddr_un addr;
      auto sock = unix_socket();
      if (sock && fill_addr(options_.uds_path + "_" + std::to_string(h.dst_port), &addr) &&
          ::connect(sock->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        Connection& c = conns_[k];
        c.sock = std::move(*sock);
        c.guest_port = h.src_port;
        c.host_port = h.dst_port;
        c.state = State::established;
        c.peer_buf_alloc = h.buf_alloc;
        c.peer_fwd_cnt = h.fwd_cnt;
        send_control(c, vsock::kOpResponse);
        watch_read(k, c);
        return;
      }
    }
    if (h.op != vsock::kOpRst) send_rst_to(h);
    return;
  }
  Connection& c = it->second;
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  switch (h.op) {
    case vsock::kOpResponse: {
      if (c.state != State::awaiting_guest) {
        close_connection(k, true);
        return;
      }
      c.state = State::established;
      std::string ok = "OK " + std::to_string(c.host_port) + "\n";
      if (::send(c.sock.get(), ok.data(), ok.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(ok.size())) {
        close_connection(k, true);
        return;
      }
      break;
    }
    case vsock::kOpRw:
      if (c.state != State::established) {
        close_connection(k, true);
        return;
      }
      handle_rw(c, p);
      if (!conns_.count(k)) return;
      break;
    case vsock::kOpCreditRequest:
      send_control(c, vsock::kOpCreditUpdate);
      c.fwd_cnt_sent = c.fwd_cnt;
      break;
    case vsock::kOpCreditUpdate:
      break;
    case vsock::kOpShutdown:
      if ((h.flags & (vsock::kShutdownRecv | vsock::kShutdownSend)) ==
          (vsock::kShutdownRecv | vsock::kShutdownSend)) {
        close_connection(k, true);  // §5.10.6.6: the device answers a full shutdown with RST
        return;
      }
      if (h.flags & vsock::kShutdownSend) {
        c.shut_write_after_flush = true;
        if (!flush_pending(c)) {
          close_connection(k, true);
          return;
        }
      }
      if (h.flags & vsock::kShutdownRecv) c.host_eof = true;  // stop reading the host socket
      break;
    case vsock::kOpRst:
      close_connection(k, false);
      return;
    default:  // REQUEST on a live connection, unknown ops
      close_connection(k, true);
      return;
  }
  if (peer_credit(c) > 0) watch_read(k, c);
}

void VsockDevice::handle_rw(Connection& c, const VsockTxPacket& p) {
  Key k = key(c.guest_port, c.host_port);
  uint32_t len = p.header.len;
  if (c.pending.size() + len > kBufAlloc) {  // the guest ignored our credit
    close_connection(k, true);
    return;
  }
  size_t done = 0;
  if (c.pending.empty() && len) {
    std::vector<iovec> iov;
    for (const GuestRegion& g : p.payload) {
      auto s = mem_->slice(g.addr, g.len);
      if (!s) return;
      iov.push_back({s->data(), s->size()});
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    ssize_t n = ::sendmsg(c.sock.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN) {
      close_connection(k, true);
      return;
    }
    done = n > 0 ? static_cast<size_t>(n) : 0;
    c.fwd_cnt += static_cast<uint32_t>(done);
  }
  if (done < len) {
    // Keep the rest (bounded by kBufAlloc) until the socket is writable.
    size_t off = 0;
    for (const GuestRegion& g : p.payload) {
      size_t skip = done > off ? std::min<size_t>(done - off, g.len) : 0;
      size_t take = g.len - skip;
      if (take) {
        size_t at = c.pending.size();
        c.pending.resize(at + take);
        (void)mem_->read(GuestAddress{g.addr.value + skip},
                         std::as_writable_bytes(std::span(c.pending.data() + at, take)));
      }
      off += g.len;
    }
    if (!c.write_watch) {
      auto id = thread_->watch(c.sock.get(), [this, k] { on_socket_writable(k); }, true);
      if (id) c.write_watch = *id;
    }
  }
  if (c.fwd_cnt - c.fwd_cnt_sent >= kBufAlloc / 2) {
    send_control(c, vsock::kOpCreditUpdate);
    c.fwd_cnt_sent = c.fwd_cnt;
  }
}

bool VsockDevice::flush_pending(Connection& c) {
  while (!c.pending.empty()) {
    ssize_t n = ::send(c.sock.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN;
    c.pending.erase(c.pending.begin(), c.pending.begin() + n);
    c.fwd_cnt += static_cast<uint32_t>(n);
  }
  if (c.write_watch) {
    thread_->unwatch(c.write_watch);
    c.write_watch = 0;
  }
  if (c.shut_write_after_flush) ::shutdown(c.sock.get(), SHUT_WR);
  return true;
}

void VsockDevice::on_socket_writable(Key k) {
  auto it = conns_.find(k);
  if (it == conns_.end()) return;
  Connection& c = it->second;
  if (!flush_pending(c)) {
    close_connection(k, true);
  } else if (c.fwd_cnt != c.fwd_cnt_sent) {
    send_control(c, vsock::kOpCreditUpdate);  // the guest may be waiting for room
    c.fwd_cnt_sent = c.fwd_cnt;
  }
  process_rx();
}

void VsockDevice::on_socket_readable(Key k) {
  auto it = conns_.find(k);
  if (it == conns_.end()) return;
  Connection& c = it->second;
  if (c.read_watch) thread_->unwatch(c.read_watch);
  c.read_watch = 0;
  if (!c.queued) {
    c.queued = true;
    readable_.push_back(k);
  }
  process_rx();
}

void VsockDevice::on_accept() {
  int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  UniqueFd sock(fd);
  if (conns_.size() + host_requests_.size() >= options_.max_connections) return;
  auto id = thread_->watch(fd, [this, fd] { on_host_request(fd); });
  if (!id) return;
  host_requests_[fd] = HostRequest{std::move(sock), {}, *id};
}

void VsockDevice::on_host_request(int fd) {
  auto it = host_requests_.find(fd);
  if (it == host_requests_.end()) return;
  HostRequest& r = it->second;
  // One byte at a time: whatever follows the newline belongs to the guest.
  for (;;) {
    char ch;
    ssize_t n = ::recv(fd, &ch, 1, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) return;
    bool bad = n <= 0 || r.line.size() >= kMaxConnectLine;
    if (!bad && ch != '\n') {
      r.line.push_back(ch);
      continue;
    }
    uint32_t port = 0;
    bool ok = !bad && r.line.rfind("CONNECT ", 0) == 0 && r.line.size() > 8;
    for (size_t i = 8; ok && i < r.line.size(); i++) {
      ok = r.line[i] >= '0' && r.line[i] <= '9' && port <= (0xffffffffu - 9) / 10;
      port = port * 10 + static_cast<uint32_t>(r.line[i] - '0');
    }
    thread_->unwatch(r.watch);
    UniqueFd sock = std::move(r.sock);
    host_requests_.erase(it);
    if (!ok) return;  // closing the socket is the answer
    uint32_t hp;
    do {
      hp = next_host_port_++;
      if (next_host_port_ == 0) next_host_port_ = 1u << 30;
    } while (conns_.count(key(port, hp)));
    Connection& c = conns_[key(port, hp)];
    c.sock = std::move(sock);
    c.guest_port = port;
    c.host_port = hp;
    c.state = State::awaiting_guest;
    send_control(c, vsock::kOpRequest);
    process_rx();
    return;
  }
}

void VsockDevice::process_rx() {
  VirtQueue& q = queues_[kRx].queue;
  if (q.broken()) return;
  bool used = false;
  while (!control_.empty() || !readable_.empty()) {
    auto popped = q.pop_or_enable_notification();
    if (!popped) {
      log_line("virtio-vsock: " + popped.error().describe() + "; device needs reset");
      interrupt_->device_failed();
      return;
    }
    if (!popped->has_value()) break;
    AvailableChain& a = **popped;
    if (!a.chain || a.chain->writable_len() < sizeof(VsockHeader)) {
      (void)q.add_used(a.head, 0);  // unusable buffer: give it back empty
      used = true;
      continue;
    }
    const DescriptorChain& chain = *a.chain;
    if (!control_.empty()) {
      (void)chain.write(*mem_, 0, std::as_bytes(std::span(&control_.front(), 1)));
      control_.pop_front();
      (void)q.add_used(a.head, sizeof(VsockHeader));
      used = true;
      continue;
    }
    Key k = readable_.front();
    readable_.pop_front();
    auto it = conns_.find(k);
    if (it == conns_.end()) {
      q.undo_pop();
      continue;
    }
    Connection& c = it->second;
    c.queued = false;
    uint64_t room = std::min<uint64_t>(chain.writable_len() - sizeof(VsockHeader), vsock::kMaxPayload);
    uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(room, peer_credit(c)));
    if (want == 0 || c.state != State::established || c.host_eof) {
      q.undo_pop();  // wait for a credit update
      continue;
    }
    auto regions = regions_of(chain.writable(), sizeof(VsockHeader), want);
    std::vector<iovec> iov;
    for (const GuestRegion& g : *regions) {
      auto s = mem_->slice(g.addr, g.len);
      if (s) iov.push_back({s->data(), s->size()});
    }
    ssize_t n = ::readv(c.sock.get(), iov.data(), static_cast<int>(iov.size()));
    if (n < 0 && errno == EAGAIN) {
      q.undo_pop();
      watch_read(k, c);
      continue;
    }
    if (n == 0 && !c.shut_write_after_flush && !peer_hung_up(c.sock.get())) {
      // The host shut only its write side (shutdown(SHUT_WR)) and still reads: tell the guest it
      // gets no more data and keep carrying its replies, as a half-closed stream socket does.
      q.undo_pop();
      c.host_eof = true;
      send_control(c, vsock::kOpShutdown, vsock::kShutdownSend);
      continue;
    }
    if (n <= 0) {  // the host closed its end (or both directions are done): wait for the RST
      q.undo_pop();
      c.host_eof = true;
      c.state = State::closing;
      send_control(c, vsock::kOpShutdown, vsock::kShutdownRecv | vsock::kShutdownSend);
      continue;
    }
    VsockHeader h{};
    h.src_cid = vsock::kHostCid;
    h.dst_cid = options_.guest_cid;
    h.src_port = c.host_port;
    h.dst_port = c.guest_port;
    h.len = static_cast<uint32_t>(n);
    h.type = vsock::kTypeStream;
    h.op = vsock::kOpRw;
    h.buf_alloc = kBufAlloc;
    h.fwd_cnt = c.fwd_cnt;
    c.fwd_cnt_sent = c.fwd_cnt;
    (void)chain.write(*mem_, 0, std::as_bytes(std::span(&h, 1)));
    c.rx_cnt += static_cast<uint32_t>(n);
    (void)q.add_used(a.head, static_cast<uint32_t>(sizeof h + static_cast<size_t>(n)));
    used = true;
    c.queued = true;  // there may be more
    readable_.push_back(k);
  }
  if (used && q.needs_interrupt()) interrupt_->used_buffer(kRx);
  if (tx_stalled_ && control_.size() < kMaxControl) {
    tx_stalled_ = false;
    thread_->post([this] { process_tx(); });
  }
}

}  // namespace flick::virtio
