// VsockDevice: virtio-vsock (virtio 1.2 §5.10) with the host side on Unix sockets, the way
// Firecracker does it (docs/vsock.md there):
//
//   host -> guest: connect to `<uds_path>`, write "CONNECT <port>\n"; once the guest accepts,
//                  the device answers "OK <host port>\n" and the stream is spliced.
//   guest -> host: a guest connect to CID 2 port P is forwarded to `<uds_path>_P`.
//
// Flow control is the credit scheme of §5.10.6.3: the device buffers at most kBufAlloc bytes
// per connection that the host socket has not yet taken, and reads from a host socket only as
// much as the guest has room for. A guest that sends past its credit gets its connection reset.
#pragma once

#include "base/fd.h"
#include "virtio/device.h"
#include "virtio/io_thread.h"
#include "virtio/vsock/vsock_packet.h"

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flick::virtio {

struct VsockOptions {
  uint64_t guest_cid = 3;
  std::string uds_path;
  uint16_t queue_size = 256;
  uint32_t max_connections = 1024;
};

class VsockDevice : public VirtioDevice {
 public:
  static constexpr uint32_t kBufAlloc = 256 * 1024;

  // Binds and listens on options.uds_path (replacing a stale socket file).
  static Result<std::shared_ptr<VsockDevice>> create(VsockOptions options);
  ~VsockDevice() override;

  uint32_t device_type() const override;
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  Result<void> activate(GuestMemory& mem, uint64_t acked_features, std::vector<ActiveQueue> queues,
                        std::shared_ptr<VirtioInterrupt> interrupt) override;
  void reset() override;

 private:
  enum class State { awaiting_guest, established, closing };
  struct Connection {
    UniqueFd sock;
    uint32_t guest_port = 0;
    uint32_t host_port = 0;
    State state = State::awaiting_guest;
    std::vector<uint8_t> pending;  // guest -> host bytes the socket has not taken yet
    uint32_t fwd_cnt = 0;          // bytes moved from `pending` into the socket
    uint32_t fwd_cnt_sent = 0;     // fwd_cnt last told to the guest
    uint32_t peer_buf_alloc = 0;
    uint32_t peer_fwd_cnt = 0;
    uint32_t rx_cnt = 0;  // bytes sent to the guest
    bool shut_write_after_flush = false;
    bool host_eof = false;
    bool queued = false;  // in readable_
    uint64_t read_watch = 0;
    uint64_t write_watch = 0;
  };
  struct HostRequest {  // an accepted host socket waiting for its "CONNECT <port>\n"
    UniqueFd sock;
    std::string line;
    uint64_t watch = 0;
  };
  using Key = uint64_t;  // guest_port << 32 | host_port
  static Key key(uint32_t guest_port, uint32_t host_port) {
    return uint64_t{guest_port} << 32 | host_port;
  }

  VsockDevice() = default;
  void process_tx();
  void process_rx();
  void handle_packet(const VsockTxPacket& p);
  void handle_rw(Connection& c, const VsockTxPacket& p);
  void on_accept();
  void on_host_request(int fd);
  void on_socket_readable(Key k);
  void on_socket_writable(Key k);
  bool flush_pending(Connection& c);
  void close_connection(Key k, bool send_rst);
  void send_control(const Connection& c, uint16_t op, uint32_t flags = 0);
  void send_rst_to(const VsockHeader& h);
  uint32_t peer_credit(const Connection& c) const;
  void watch_read(Key k, Connection& c);
  void signal_rx();

  VsockOptions options_;
  UniqueFd listener_;
  std::vector<uint8_t> config_;

  // Live between activate() and reset(), touched on the I/O thread only.
  GuestMemory* mem_ = nullptr;
  std::vector<ActiveQueue> queues_;
  std::shared_ptr<VirtioInterrupt> interrupt_;
  std::unique_ptr<IoThread> thread_;
  std::map<Key, Connection> conns_;
  std::map<int, HostRequest> host_requests_;
  std::deque<VsockHeader> control_;  // device -> guest control packets waiting for RX buffers
  std::deque<Key> readable_;         // connections with host data waiting for RX buffers
  uint32_t next_host_port_ = 1u << 30;
  bool tx_stalled_ = false;
};

}  // namespace flick::virtio
