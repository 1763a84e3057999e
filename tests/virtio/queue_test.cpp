#include "virtio/queue.h"
#include "virtio_test_util.h"

namespace flick::virtio::testing {
namespace {

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override { mem = make_memory(); }
  VirtQueue make(bool event_idx = false, bool indirect = true) {
    auto q = VirtQueue::create(mem, mq.config(), event_idx, indirect);
    EXPECT_TRUE(q.ok()) << q.error().describe();
    return std::move(q).value();
  }
  GuestMemory mem;
  MockQueue mq{mem, GuestAddress{0x1000}, 16};
  GuestArena arena{0x100000, 0x800000};
};

TEST_F(QueueTest, PopsChainWithReadableThenWritableParts) {
  VirtQueue q = make();
  auto a = arena.alloc(16), b = arena.alloc(100), c = arena.alloc(1);
  uint16_t head = mq.add_chain({{a, 16, false}, {b, 100, true}, {c, 1, true}});
  auto popped = q.pop();
  ASSERT_TRUE(popped.ok());
  ASSERT_TRUE(popped->has_value());
  auto& chain = (*popped)->chain;
  ASSERT_TRUE(chain.ok()) << chain.error().describe();
  EXPECT_EQ(chain->head(), head);
  EXPECT_EQ(chain->readable().size(), 1u);
  EXPECT_EQ(chain->writable().size(), 2u);
  EXPECT_EQ(chain->readable_len(), 16u);
  EXPECT_EQ(chain->writable_len(), 101u);
  EXPECT_FALSE(q.pop()->has_value());  // ring now empty
}

TEST_F(QueueTest, AddUsedPublishesElementAndIndex) {
  VirtQueue q = make();
  auto a = arena.alloc(8);
  uint16_t head = mq.add_chain({{a, 8, true}});
  ASSERT_TRUE(q.pop()->has_value());
  ASSERT_TRUE(q.add_used(head, 8).ok());
  EXPECT_EQ(mq.used_idx(), 1);
  EXPECT_EQ(mq.used(0).id, head);
  EXPECT_EQ(mq.used(0).len, 8u);
}

TEST_F(QueueTest, FullRingIsDrainedInOrder) {
  VirtQueue q = make();
  std::vector<uint16_t> heads;
  for (int i = 0; i < 16; i++) heads.push_back(mq.add_chain({{arena.alloc(4), 4, true}}));
  EXPECT_EQ(*q.pending(), 16);
  for (int i = 0; i < 16; i++) {
    auto p = q.pop();
    ASSERT_TRUE(p.ok() && p->has_value());
    EXPECT_EQ((*p)->head, heads[i]);
    ASSERT_TRUE(q.add_used((*p)->head, 4).ok());
  }
  EXPECT_FALSE(q.pop()->has_value());
  EXPECT_EQ(mq.used_idx(), 16);
  // The ring wraps: a 17th chain reuses slot 0.
  mq.add_chain({{arena.alloc(4), 4, true}});
  EXPECT_TRUE(q.pop()->has_value());
}

TEST_F(QueueTest, AvailIndexRunningAheadBreaksTheQueue) {
  VirtQueue q = make();
  mq.set_avail_idx(17);  // more than the queue size ahead
  auto p = q.pop();
  EXPECT_FALSE(p.ok());
  EXPECT_TRUE(q.broken());
  mq.set_avail_idx(1);
  EXPECT_FALSE(q.pop().ok());  // stays broken until reset
}

TEST_F(QueueTest, HeadIndexOutOfRangeBreaksTheQueue) {
  VirtQueue q = make();
  mq.publish(16);
  EXPECT_FALSE(q.pop().ok());
  EXPECT_TRUE(q.broken());
}

TEST_F(QueueTest, LoopingChainFailsOnlyThatRequest) {
  VirtQueue q = make();
  auto a = arena.alloc(8);
  mq.set_desc(0, a.value, 8, kDescNext, 1);
  mq.set_desc(1, a.value, 8, kDescNext, 0);
  mq.publish(0);
  auto p = q.pop();
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->has_value());
  EXPECT_FALSE((*p)->chain.ok());
  EXPECT_EQ((*p)->head, 0);
  EXPECT_FALSE(q.broken());
}

TEST_F(QueueTest, RejectsMalformedChains) {
  struct Case {
    const char* name;
    std::function<void()> build;
  };
  auto a = arena.alloc(64);
  auto table = arena.alloc(64);
  std::vector<Case> cases = {
      {"buffer outside memory", [&] { mq.set_desc(0, 0xfffff000, 0x2000, 0, 0); }},
      {"address overflow", [&] { mq.set_desc(0, ~0ull - 4, 16, 0, 0); }},
      {"next out of range", [&] { mq.set_desc(0, a.value, 8, kDescNext, 16); }},
      {"readable after writable", [&] {
         mq.set_desc(0, a.value, 8, kDescWrite | kDescNext, 1);
         mq.set_desc(1, a.value, 8, 0, 0);
       }},
      {"indirect with next", [&] { mq.set_desc(0, table.value, 16, kDescIndirect | kDescNext, 1); }},
      {"indirect bad length", [&] { mq.set_desc(0, table.value, 17, kDescIndirect, 0); }},
      {"indirect empty", [&] { mq.set_desc(0, table.value, 0, kDescIndirect, 0); }},
      {"indirect table outside memory", [&] { mq.set_desc(0, 0xfffff000, 32, kDescIndirect, 0); }},
      {"indirect longer than queue", [&] { mq.set_desc(0, arena.alloc(16 * 17).value, 16 * 17, kDescIndirect, 0); }},
      {"nested indirect", [&] {
         (void)mem.write_obj(table, VirtqDesc{table.value, 16, kDescIndirect, 0});
         mq.set_desc(0, table.value, 16, kDescIndirect, 0);
       }},
      {"indirect loop", [&] {
         (void)mem.write_obj(table, VirtqDesc{a.value, 8, kDescNext, 1});
         (void)mem.write_obj(GuestAddress{table.value + 16}, VirtqDesc{a.value, 8, kDescNext, 0});
         mq.set_desc(0, table.value, 32, kDescIndirect, 0);
       }},
      {"indirect next out of range", [&] {
         (void)mem.write_obj(table, VirtqDesc{a.value, 8, kDescNext, 5});
         mq.set_desc(0, table.value, 16, kDescIndirect, 0);
       }},
  };
  for (auto& c : cases) {
    MockQueue fresh(mem, GuestAddress{0x1000}, 16);
    mq = fresh;
    VirtQueue q = make();
    c.build();
    mq.publish(0);
    auto p = q.pop();
    ASSERT_TRUE(p.ok()) << c.name;
    ASSERT_TRUE(p->has_value()) << c.name;
    EXPECT_FALSE((*p)->chain.ok()) << c.name;
    EXPECT_FALSE(q.broken()) << c.name;
  }
}

TEST_F(QueueTest, IndirectRefusedWhenNotNegotiated) {
  VirtQueue q = make(false, /*indirect=*/false);
  auto table = arena.alloc(16);
  mq.add_indirect_chain({{arena.alloc(8), 8, true}}, table);
  EXPECT_FALSE((*q.pop())->chain.ok());
}

TEST_F(QueueTest, IndirectChainIsFlattened) {
  VirtQueue q = make();
  auto table = arena.alloc(48);
  auto h = arena.alloc(16), d = arena.alloc(512), s = arena.alloc(1);
  mq.add_indirect_chain({{h, 16, false}, {d, 512, true}, {s, 1, true}}, table);
  auto p = q.pop();
  auto& chain = (*p)->chain;
  ASSERT_TRUE(chain.ok()) << chain.error().describe();
  ASSERT_EQ(chain->descriptors().size(), 3u);
  EXPECT_EQ(chain->descriptors()[1].addr, d);
  EXPECT_EQ(chain->writable_len(), 513u);
}

TEST_F(QueueTest, ChainReadAndWriteSpanDescriptors) {
  VirtQueue q = make();
  auto r1 = arena.alloc(3), r2 = arena.alloc(5), w1 = arena.alloc(2), w2 = arena.alloc(4);
  const char msg[] = "abcdefgh";
  (void)mem.write(r1, std::as_bytes(std::span(msg, 3)));
  (void)mem.write(r2, std::as_bytes(std::span(msg + 3, 5)));
  mq.add_chain({{r1, 3, false}, {r2, 5, false}, {w1, 2, true}, {w2, 4, true}});
  auto p = q.pop();
  auto& chain = *(*p)->chain;
  std::byte buf[6];
  EXPECT_EQ(*chain.read(mem, 2, buf), 6u);
  EXPECT_EQ(std::memcmp(buf, "cdefgh", 6), 0);
  const char out[] = "WXYZ";
  ASSERT_TRUE(chain.write(mem, 1, std::as_bytes(std::span(out, 4))).ok());
  char got[4];
  (void)mem.read(GuestAddress{w1.value + 1}, std::as_writable_bytes(std::span(got, 1)));
  (void)mem.read(w2, std::as_writable_bytes(std::span(got + 1, 3)));
  EXPECT_EQ(std::memcmp(got, "WXYZ", 4), 0);
  EXPECT_FALSE(chain.write(mem, 3, std::as_bytes(std::span(out, 4))).ok());  // does not fit
}

TEST_F(QueueTest, EventIdxSuppressesInterruptsUntilUsedEventPassed) {
  VirtQueue q = make(/*event_idx=*/true);
  for (int i = 0; i < 4; i++) mq.add_chain({{arena.alloc(4), 4, true}});
  mq.set_used_event(2);  // driver wants an interrupt once used idx passes 2
  for (int i = 0; i < 2; i++) {
    auto p = q.pop();
    ASSERT_TRUE(q.add_used((*p)->head, 4).ok());
  }
  EXPECT_TRUE(q.needs_interrupt());  // first check always signals
  auto p = q.pop();
  ASSERT_TRUE(q.add_used((*p)->head, 4).ok());  // used idx 3: passes used_event 2
  EXPECT_TRUE(q.needs_interrupt());
  p = q.pop();
  ASSERT_TRUE(q.add_used((*p)->head, 4).ok());  // used idx 4: event 2 already passed
  EXPECT_FALSE(q.needs_interrupt());
}

TEST_F(QueueTest, NoInterruptFlagWithoutEventIdx) {
  VirtQueue q = make();
  mq.add_chain({{arena.alloc(4), 4, true}});
  auto p = q.pop();
  ASSERT_TRUE(q.add_used((*p)->head, 4).ok());
  mq.set_avail_flags(kAvailNoInterrupt);
  EXPECT_FALSE(q.needs_interrupt());
  mq.set_avail_flags(0);
  EXPECT_TRUE(q.needs_interrupt());
}

TEST_F(QueueTest, EnableNotificationPublishesAvailEventAndReportsRaces) {
  VirtQueue q = make(/*event_idx=*/true);
  mq.add_chain({{arena.alloc(4), 4, true}});
  ASSERT_TRUE(q.pop()->has_value());
  EXPECT_FALSE(*q.enable_notification());
  EXPECT_EQ(mq.avail_event(), 1);
  mq.add_chain({{arena.alloc(4), 4, true}});
  EXPECT_TRUE(*q.enable_notification());
}

TEST_F(QueueTest, SetupValidation) {
  QueueConfig c = mq.config();
  c.size = 12;
  EXPECT_FALSE(VirtQueue::create(mem, c, false, false).ok());
  c = mq.config();
  c.desc_table = GuestAddress{0x1008};
  EXPECT_FALSE(VirtQueue::create(mem, c, false, false).ok());
  c = mq.config();
  c.used_ring = GuestAddress{(16 << 20) - 8};
  EXPECT_FALSE(VirtQueue::create(mem, c, false, false).ok());
  c = mq.config();
  c.size = 32;  // above max
  EXPECT_FALSE(VirtQueue::create(mem, c, false, false).ok());
}

}  // namespace
}  // namespace flick::virtio::testing
