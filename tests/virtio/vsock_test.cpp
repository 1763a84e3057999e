#include "virtio/vsock/vsock_device.h"
#include "virtio/vsock/vsock_packet.h"
#include "virtio_test_util.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace flick::virtio::testing {
namespace {

using namespace vsock;
constexpr uint64_t kCid = 7;

// Plays the guest's virtio-vsock driver over mock queues.
class VsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = make_memory(32 << 20);
    char dir[] = "/tmp/flick-vsock-XXXXXX";
    ASSERT_TRUE(::mkdtemp(dir));
    dir_ = dir;
    uds = dir_ + "/v.sock";
    auto d = VsockDevice::create({kCid, uds, 64, 16});
    ASSERT_TRUE(d.ok()) << d.error().describe();
    dev = *d;
    irq = std::make_shared<CountingInterrupt>();
    transport = MmioTransport::create(dev, &mem, irq).value();
    ASSERT_TRUE(init_device(*transport, kFeatureVersion1, {&rxq, &txq, &evq}) & kStatusDriverOk);
  }
  void TearDown() override {
    transport.reset();
    dev.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  void give_rx_buffers(int n, uint32_t size = 4096) {
    for (int i = 0; i < n; i++) {
      auto b = arena.alloc(sizeof(VsockHeader) + size);
      rx_bufs[rxq.add_chain({{b, static_cast<uint32_t>(sizeof(VsockHeader) + size), true}})] = b;
    }
    notify(*transport, 0);
  }
  void send(uint16_t op, uint32_t src_port, uint32_t dst_port, std::string_view payload = {},
            uint32_t flags = 0, uint32_t buf_alloc = 65536, uint32_t fwd_cnt = 0) {
    VsockHeader h{kCid, kHostCid, src_port, dst_port, static_cast<uint32_t>(payload.size()),
                  kTypeStream, op, flags, buf_alloc, fwd_cnt};
    auto hb = arena.alloc(sizeof h);
    (void)mem.write_obj(hb, h);
    std::vector<Buffer> bufs{{hb, sizeof h, false}};
    if (!payload.empty()) {
      auto pb = arena.alloc(payload.size());
      (void)mem.write(pb, std::as_bytes(std::span(payload.data(), payload.size())));
      bufs.push_back({pb, static_cast<uint32_t>(payload.size()), false});
    }
    txq.add_chain(bufs);
    notify(*transport, 1);
  }
  // The next packet the device put in the RX queue.
  bool receive(VsockHeader* h, std::string* payload = nullptr) {
    if (!eventually([&] { return rxq.used_idx() != rx_seen; })) return false;
    VirtqUsedElem e = rxq.used(rx_seen++);
    GuestAddress b = rx_bufs.at(static_cast<uint16_t>(e.id));
    *h = *mem.read_obj<VsockHeader>(b);
    if (payload) {
      payload->resize(h->len);
      (void)mem.read(GuestAddress{b.value + sizeof *h}, std::as_writable_bytes(std::span(*payload)));
    }
    return true;
  }
  int host_listen(uint32_t port) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string p = uds + "_" + std::to_string(port);
    std::strcpy(a.sun_path, p.c_str());
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 4), 0);
    return fd;
  }
  int host_connect() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, uds.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  std::string read_some(int fd, size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) break;
      ssize_t r = ::read(fd, out.data() + got, n - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }

  GuestMemory mem;
  std::string dir_, uds;
  std::shared_ptr<VsockDevice> dev;
  std::shared_ptr<CountingInterrupt> irq;
  MockQueue rxq{mem, GuestAddress{0x1000}, 64};
  MockQueue txq{mem, GuestAddress{0x4000}, 64};
  MockQueue evq{mem, GuestAddress{0x7000}, 64};
  std::unique_ptr<MmioTransport> transport;
  GuestArena arena{0x100000, 0x1000000};
  std::map<uint16_t, GuestAddress> rx_bufs;
  uint16_t rx_seen = 0;
};

TEST_F(VsockTest, ConfigHoldsGuestCid) {
  uint8_t b[8];
  transport->read(mmio::kConfig, b);
  uint64_t cid;
  std::memcpy(&cid, b, 8);
  EXPECT_EQ(cid, kCid);
}

TEST_F(VsockTest, GuestConnectsToHostPort) {
  int listener = host_listen(1234);
  give_rx_buffers(8);
  send(kOpRequest, 5000, 1234);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpResponse);
  EXPECT_EQ(h.dst_port, 5000u);
  EXPECT_EQ(h.src_port, 1234u);
  EXPECT_EQ(h.dst_cid, kCid);
  int host = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(host, 0);

  send(kOpRw, 5000, 1234, "hello");
  EXPECT_EQ(read_some(host, 5), "hello");

  ASSERT_EQ(::write(host, "world!", 6), 6);
  std::string payload;
  ASSERT_TRUE(receive(&h, &payload));
  EXPECT_EQ(h.op, kOpRw);
  EXPECT_EQ(payload, "world!");

  send(kOpRst, 5000, 1234);
  EXPECT_EQ(read_some(host, 1), "");  // EOF: the device closed its end
  ::close(host);
  ::close(listener);
}

TEST_F(VsockTest, HostHalfCloseStillCarriesTheGuestsReply) {
  int listener = host_listen(1234);
  give_rx_buffers(8);
  send(kOpRequest, 5000, 1234);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  ASSERT_EQ(h.op, kOpResponse);
  int host = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(host, 0);

  ASSERT_EQ(::write(host, "request", 7), 7);
  ASSERT_EQ(::shutdown(host, SHUT_WR), 0);  // the host sends no more, but still reads
  std::string payload;
  ASSERT_TRUE(receive(&h, &payload));
  EXPECT_EQ(payload, "request");
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpShutdown);
  EXPECT_EQ(h.flags, kShutdownSend);  // "no more data from the host", not a full close

  send(kOpRw, 5000, 1234, "reply");
  EXPECT_EQ(read_some(host, 5), "reply");
  send(kOpShutdown, 5000, 1234, "", kShutdownRecv | kShutdownSend);
  EXPECT_EQ(read_some(host, 1), "");
  ::close(host);
  ::close(listener);
}

TEST_F(VsockTest, GuestConnectToMissingPortIsReset) {
  give_rx_buffers(2);
  send(kOpRequest, 5000, 999);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpRst);
  EXPECT_EQ(h.dst_port, 5000u);
}

TEST_F(VsockTest, HostConnectsToGuestPort) {
  give_rx_buffers(8);
  int host = host_connect();
  ASSERT_EQ(::write(host, "CONNECT 52\n", 11), 11);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpRequest);
  EXPECT_EQ(h.dst_port, 52u);
  uint32_t host_port = h.src_port;
  send(kOpResponse, 52, host_port);
  std::string ok = "OK " + std::to_string(host_port) + "\n";
  EXPECT_EQ(read_some(host, ok.size()), ok);
  ASSERT_EQ(::write(host, "ping", 4), 4);
  std::string payload;
  ASSERT_TRUE(receive(&h, &payload));
  EXPECT_EQ(payload, "ping");
  // Host closes: the guest is told with a full SHUTDOWN.
  ::close(host);
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpShutdown);
  EXPECT_EQ(h.flags, kShutdownRecv | kShutdownSend);
}

TEST_F(VsockTest, BadConnectLineClosesTheSocket) {
  int host = host_connect();
  ASSERT_EQ(::write(host, "HELLO 52\n", 9), 9);
  EXPECT_EQ(read_some(host, 1), "");
  ::close(host);
}

TEST_F(VsockTest, HostDataWaitsForGuestCredit) {
  int listener = host_listen(1);
  give_rx_buffers(4);
  send(kOpRequest, 5000, 1, {}, 0, /*buf_alloc=*/4);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  int host = ::accept(listener, nullptr, nullptr);
  ASSERT_EQ(::write(host, "0123456789", 10), 10);
  std::string payload;
  ASSERT_TRUE(receive(&h, &payload));
  EXPECT_EQ(payload, "0123");  // only the 4 bytes of credit the guest gave
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(rxq.used_idx(), rx_seen);  // nothing more without credit
  send(kOpCreditUpdate, 5000, 1, {}, 0, 4, /*fwd_cnt=*/4);
  ASSERT_TRUE(receive(&h, &payload));
  EXPECT_EQ(payload, "4567");
  ::close(host);
  ::close(listener);
}

TEST_F(VsockTest, GuestExceedingCreditIsReset) {
  int listener = host_listen(2);
  give_rx_buffers(4);
  send(kOpRequest, 5000, 2);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  int host = ::accept(listener, nullptr, nullptr);
  // The host never reads; the guest sends far more than buf_alloc.
  std::string chunk(60000, 'x');
  for (int i = 0; i < 40; i++) send(kOpRw, 5000, 2, chunk);
  bool reset = false;
  for (int i = 0; i < 8 && !reset; i++) {
    if (!receive(&h)) break;
    reset = h.op == kOpRst;
  }
  EXPECT_TRUE(reset);
  ::close(host);
  ::close(listener);
}

TEST_F(VsockTest, SlowHostReaderGetsEveryByteInOrder) {
  // More than the Unix socket buffer takes at once, within our 256 KiB credit: the rest waits
  // in the device's per-connection buffer and is flushed as the host reads.
  int listener = host_listen(3);
  give_rx_buffers(16);
  send(kOpRequest, 5000, 3);
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  ASSERT_EQ(h.op, kOpResponse);
  int host = ::accept(listener, nullptr, nullptr);
  int small = 4096;
  ::setsockopt(host, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::string sent;
  for (int i = 0; i < 4; i++) {
    std::string chunk(60000, static_cast<char>('a' + i));
    chunk[0] = static_cast<char>('0' + i);
    sent += chunk;
    send(kOpRw, 5000, 3, chunk);
  }
  EXPECT_EQ(read_some(host, sent.size()), sent);
  // The device tells the guest as its buffer drains: once everything is forwarded, the guest
  // knows of at least half the buffer free, so it can never stall for lack of credit.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  uint32_t fwd = 0;
  while (rxq.used_idx() != rx_seen && receive(&h)) {
    if (h.op == kOpCreditUpdate) fwd = std::max(fwd, h.fwd_cnt);
  }
  EXPECT_GT(fwd, 0u);
  EXPECT_LT(sent.size() - fwd, VsockDevice::kBufAlloc / 2);
  ::close(host);
  ::close(listener);
}

TEST_F(VsockTest, MalformedPacketsAreReturnedAndIgnored) {
  give_rx_buffers(2);
  auto hb = arena.alloc(20);
  txq.add_chain({{hb, 20, false}});  // short header
  VsockHeader big{kCid, kHostCid, 1, 2, 1u << 20, kTypeStream, kOpRw, 0, 0, 0};
  auto bb = arena.alloc(sizeof big);
  (void)mem.write_obj(bb, big);
  txq.add_chain({{bb, sizeof big, false}});  // payload longer than the chain
  notify(*transport, 1);
  ASSERT_TRUE(eventually([&] { return txq.used_idx() == 2; }));
  send(kOpRequest, 1, 999);  // the device still answers
  VsockHeader h;
  ASSERT_TRUE(receive(&h));
  EXPECT_EQ(h.op, kOpRst);
}

TEST(VsockPacketTest, ParsesHeaderAndPayload) {
  GuestMemory mem = make_memory();
  MockQueue mq(mem, GuestAddress{0x1000}, 16);
  auto q = VirtQueue::create(mem, mq.config(), false, false);
  GuestArena arena(0x100000, 0x100000);
  VsockHeader h{3, 2, 1, 2, 10, kTypeStream, kOpRw, 0, 0, 0};
  auto a = arena.alloc(54);
  (void)mem.write_obj(a, h);
  mq.add_chain({{a, 50, false}, {arena.alloc(4), 4, false}});
  auto p = parse_vsock_tx(mem, *(*q->pop())->chain);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  ASSERT_EQ(p->payload.size(), 2u);
  EXPECT_EQ(p->payload[0].len, 6u);
  EXPECT_EQ(p->payload[1].len, 4u);
}

}  // namespace
}  // namespace flick::virtio::testing
