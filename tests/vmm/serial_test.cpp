#include "vmm/devices/serial.h"

#include <gtest/gtest.h>

#include <string>

namespace flick::vmm {
namespace {

struct CountingIrq : Interrupt {
  int count = 0;
  void trigger() override { ++count; }
};

struct SerialTest : ::testing::Test {
  std::shared_ptr<CountingIrq> irq = std::make_shared<CountingIrq>();
  std::string out;
  Serial uart{irq, [this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); }};

  uint8_t in(uint64_t reg) {
    uint8_t v = 0;
    uart.read(reg, std::span<uint8_t>(&v, 1));
    return v;
  }
  void out_b(uint64_t reg, uint8_t v) { uart.write(reg, std::span<const uint8_t>(&v, 1)); }
};

TEST_F(SerialTest, TransmitsBytesToTheSink) {
  for (char c : std::string("hi\n")) out_b(0, static_cast<uint8_t>(c));
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(in(5) & 0x60, 0x60);  // THRE | TEMT: always ready
  EXPECT_EQ(irq->count, 0);       // no interrupt without IER
}

TEST_F(SerialTest, ThrEmptyInterruptFollowsIerAndIsClearedByReadingIir) {
  out_b(1, 0x02);  // IER.THRI with THR empty: interrupt at once
  EXPECT_EQ(irq->count, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x02);  // IIR: THR empty
  EXPECT_EQ(in(2) & 0x0f, 0x01);  // cleared by the read
  out_b(0, 'x');                  // transmitting empties THR again
  EXPECT_EQ(irq->count, 2);
  EXPECT_EQ(in(2) & 0x0f, 0x02);
}

TEST_F(SerialTest, InputRaisesDataReadyAndIsReadInOrder) {
  out_b(1, 0x01);  // IER.RDI
  const uint8_t msg[] = {'a', 'b'};
  EXPECT_EQ(uart.push_input(msg), 2u);
  EXPECT_EQ(irq->count, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x04);
  EXPECT_EQ(in(5) & 1, 1);
  EXPECT_EQ(in(0), 'a');
  EXPECT_EQ(in(0), 'b');
  EXPECT_EQ(in(5) & 1, 0);
  EXPECT_EQ(in(2) & 0x0f, 0x01);
}

TEST_F(SerialTest, InputIsBounded) {
  std::vector<uint8_t> big(Serial::kInputCapacity + 100, 'z');
  EXPECT_EQ(uart.push_input(big), Serial::kInputCapacity);
  EXPECT_EQ(uart.push_input(big), 0u);
}

TEST_F(SerialTest, DivisorLatchAndScratchAndLoopback) {
  out_b(3, 0x80);  // DLAB
  out_b(0, 0x01);
  out_b(1, 0x00);
  EXPECT_EQ(in(0), 0x01);
  out_b(3, 0x03);
  out_b(7, 0xa5);
  EXPECT_EQ(in(7), 0xa5);
  out_b(4, 0x10);  // loopback: transmitted bytes come back as input, not to the sink
  out_b(0, 'q');
  EXPECT_EQ(out, "");
  EXPECT_EQ(in(0), 'q');
}

}  // namespace
}  // namespace flick::vmm
