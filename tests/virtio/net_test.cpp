#include "virtio/net/net_device.h"
#include "virtio_test_util.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

namespace flick::virtio::testing {
namespace {

constexpr uint16_t kTestEtherType = 0x88b5;  // IEEE local experimental
constexpr size_t kHdr = Tap::kVnetHdrSize;

std::vector<uint8_t> frame(uint8_t fill, size_t payload) {
  std::vector<uint8_t> f(14 + payload, fill);
  std::memset(f.data(), 0xff, 6);  // broadcast destination
  uint8_t src[6] = {0x02, 0, 0, 0, 0, 1};
  std::memcpy(f.data() + 6, src, 6);
  f[12] = kTestEtherType >> 8;
  f[13] = kTestEtherType & 0xff;
  return f;
}

// The TAP and a packet socket on it live in a network namespace of their own, made by a
// thread that unshares its namespace: no frame can leave the test.
class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = make_memory(32 << 20);
    std::string err;
    std::thread([&] {
      if (::unshare(CLONE_NEWNET) != 0) {
        err = "unshare(CLONE_NEWNET) failed";
        return;
      }
      auto tap = Tap::open("flicktest0");
      if (!tap) {
        err = tap.error().describe();
        return;
      }
      int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ifreq ifr{};
      std::strcpy(ifr.ifr_name, "flicktest0");
      ifr.ifr_flags = IFF_UP;
      if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) err = "bringing the TAP up failed";
      ::close(s);
      packet = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEtherType));
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(kTestEtherType);
      sll.sll_ifindex = static_cast<int>(::if_nametoindex("flicktest0"));
      ifindex = sll.sll_ifindex;
      if (::bind(packet, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) err = "bind failed";
      dev = NetDevice::create(std::move(*tap));
    }).join();
    if (!err.empty()) GTEST_SKIP() << err;
    irq = std::make_shared<CountingInterrupt>();
    transport = MmioTransport::create(dev, &mem, irq).value();
    ASSERT_TRUE(init_device(*transport, kFeatureVersion1 | 1 | 2 | (1 << 5), {&rxq, &txq}) &
                kStatusDriverOk);
  }
  void TearDown() override {
    transport.reset();
    if (packet >= 0) ::close(packet);
  }
  void host_send(const std::vector<uint8_t>& f) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    std::memset(sll.sll_addr, 0xff, 6);
    ASSERT_EQ(::sendto(packet, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&sll), sizeof sll),
              static_cast<ssize_t>(f.size()));
  }
  std::map<uint16_t, GuestAddress> post_rx(int n, uint32_t size = 2048) {
    std::map<uint16_t, GuestAddress> out;
    for (int i = 0; i < n; i++) {
      auto b = arena.alloc(size);
      out[rxq.add_chain({{b, size, true}})] = b;
    }
    notify(*transport, 0);
    return out;
  }
  // The next guest-received frame with our ethertype (IPv6 chatter may arrive too).
  bool guest_receive(std::map<uint16_t, GuestAddress>& bufs, std::vector<uint8_t>* f) {
    for (;;) {
      if (!eventually([&] { return rxq.used_idx() != rx_seen; })) return false;
      VirtqUsedElem e = rxq.used(rx_seen++);
      std::vector<uint8_t> got(e.len);
      (void)mem.read(bufs.at(static_cast<uint16_t>(e.id)), std::as_writable_bytes(std::span(got)));
      if (got.size() >= kHdr + 14 && got[kHdr + 12] == (kTestEtherType >> 8) &&
          got[kHdr + 13] == (kTestEtherType & 0xff)) {
        *f = std::move(got);
        return true;
      }
    }
  }

  GuestMemory mem;
  std::shared_ptr<NetDevice> dev;
  std::shared_ptr<CountingInterrupt> irq;
  std::unique_ptr<MmioTransport> transport;
  MockQueue rxq{mem, GuestAddress{0x1000}, 256};
  MockQueue txq{mem, GuestAddress{0x10000}, 256};
  GuestArena arena{0x100000, 0x1000000};
  int packet = -1;
  int ifindex = 0;
  uint16_t rx_seen = 0;
};

TEST_F(NetTest, MacFromConfig) {
  uint8_t mac[6];
  transport->read(mmio::kConfig, std::span(mac, 6));
  EXPECT_EQ(mac[0], 0x52);
  EXPECT_EQ(mac[5], 0x56);
}

TEST_F(NetTest, GuestTransmitReachesTheTap) {
  auto f = frame(0xab, 100);
  auto hdr = arena.alloc(kHdr), data = arena.alloc(f.size());
  (void)mem.fill(hdr, kHdr, std::byte{0});
  (void)mem.write(data, std::as_bytes(std::span(f)));
  txq.add_chain({{hdr, static_cast<uint32_t>(kHdr), false}, {data, static_cast<uint32_t>(f.size()), false}});
  notify(*transport, 1);
  pollfd p{packet, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  std::vector<uint8_t> got(2048);
  ssize_t n = ::recv(packet, got.data(), got.size(), 0);
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(got, f);
  EXPECT_TRUE(eventually([&] { return txq.used_idx() == 1; }));
}

TEST_F(NetTest, BatchOfTransmitsAllArriveAndAllReturn) {
  // 100 frames made available at once: one batch of io_uring writes.
  for (int i = 0; i < 100; i++) {
    auto f = frame(static_cast<uint8_t>(i), 60);
    auto b = arena.alloc(kHdr + f.size());
    (void)mem.fill(b, kHdr, std::byte{0});
    (void)mem.write(GuestAddress{b.value + kHdr}, std::as_bytes(std::span(f)));
    txq.add_chain({{b, static_cast<uint32_t>(kHdr + f.size()), false}});
  }
  notify(*transport, 1);
  std::set<uint8_t> seen;
  std::vector<uint8_t> got(2048);
  while (seen.size() < 100) {
    pollfd p{packet, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) break;
    ssize_t n = ::recv(packet, got.data(), got.size(), 0);
    if (n > 14) seen.insert(got[14]);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_TRUE(eventually([&] { return txq.used_idx() == 100; }));
}

TEST_F(NetTest, HostFrameReachesGuestWithHeader) {
  auto bufs = post_rx(8);
  auto f = frame(0xcd, 200);
  host_send(f);
  std::vector<uint8_t> got;
  ASSERT_TRUE(guest_receive(bufs, &got));
  ASSERT_EQ(got.size(), kHdr + f.size());
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + kHdr, got.end()), f);
  EXPECT_EQ(got[10], 1);  // num_buffers
  EXPECT_EQ(got[11], 0);
}

TEST_F(NetTest, NoReceiveBuffersMeansNoReads) {
  // The guest posts nothing: frames stay in the kernel's TAP queue.
  for (int i = 0; i < 50; i++) host_send(frame(static_cast<uint8_t>(i), 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(rxq.used_idx(), 0);
  auto bufs = post_rx(4);
  std::vector<uint8_t> got;
  ASSERT_TRUE(guest_receive(bufs, &got));  // delivered once there is room
}

TEST_F(NetTest, MalformedTransmitIsDropped) {
  auto a = arena.alloc(16);
  txq.add_chain({{a, 4, false}});                     // shorter than the header
  txq.add_chain({{a, 16, true}});                     // nothing readable
  (void)mem.fill(a, 16, std::byte{0});
  txq.set_desc(10, 0x7fff0000, 100, 0, 0);            // outside guest memory
  txq.publish(10);
  notify(*transport, 1);
  EXPECT_TRUE(eventually([&] { return txq.used_idx() == 3; }));
  EXPECT_FALSE(transport->status() & kStatusNeedsReset);
}

// A snapshot's quiesce: what the guest queued to send goes out, and no frame from the TAP
// reaches guest memory until end_save(); then the one that waited arrives.
TEST_F(NetTest, QuiesceSendsWhatIsQueuedAndHoldsReceivesUntilTheSaveEnds) {
  auto bufs = post_rx(4);
  auto sent = frame(0x11, 64);
  auto out = arena.alloc(kHdr + sent.size());
  (void)mem.fill(out, kHdr, std::byte{0});
  (void)mem.write(GuestAddress{out.value + kHdr}, std::as_bytes(std::span(sent)));
  txq.add_chain({{out, static_cast<uint32_t>(kHdr + sent.size()), false}});  // not notified
  auto saved = transport->save();
  ASSERT_TRUE(saved.ok()) << saved.error().describe();
  EXPECT_EQ(txq.used_idx(), 1);
  const uint16_t rx_before = rxq.used_idx();
  host_send(frame(0x22, 80));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(rxq.used_idx(), rx_before) << "a frame reached guest memory during the save";
  transport->end_save();
  std::vector<uint8_t> got;
  rx_seen = rx_before;
  ASSERT_TRUE(guest_receive(bufs, &got));
  EXPECT_EQ(got.size(), kHdr + 14 + 80);
  EXPECT_EQ(got[kHdr + 14], 0x22);
}

}  // namespace
}  // namespace flick::virtio::testing
