#include "vmm/acpi/aml.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace flick::vmm::acpi {
namespace {

using B = std::vector<uint8_t>;

B bytes_of(const Aml& a) {
  auto r = a.encode();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : B{};
}

TEST(AmlPkgLength, OneByteFormHoldsTotalsUpTo63) {
  EXPECT_EQ(Aml::pkg_length(0), (B{0x01}));
  EXPECT_EQ(Aml::pkg_length(62), (B{63}));  // 62 body bytes + itself = 63
}

TEST(AmlPkgLength, TwoByteFormFrom64To4095) {
  // 63 body bytes need 2 length bytes: total 65 = 0x041 -> low nibble 1, then 0x04.
  EXPECT_EQ(Aml::pkg_length(63), (B{0x41, 0x04}));
  EXPECT_EQ(Aml::pkg_length(62 + 2), (B{0x42, 0x04}));
  // Total 4095 = 0xfff is the largest 2-byte value: body 4093.
  EXPECT_EQ(Aml::pkg_length(4093), (B{0x4f, 0xff}));
}

TEST(AmlPkgLength, ThreeAndFourByteForms) {
  // Body 4094 would make a 2-byte total of 4096: too big, so 3 bytes, total 4097 = 0x1001.
  EXPECT_EQ(Aml::pkg_length(4094), (B{0x81, 0x00, 0x01}));
  // Largest 3-byte total 0xfffff.
  EXPECT_EQ(Aml::pkg_length(0xfffff - 3), (B{0x8f, 0xff, 0xff}));
  EXPECT_EQ(Aml::pkg_length(0xfffff - 2), (B{0xc1, 0x00, 0x00, 0x01}));  // total 0x100001
  EXPECT_EQ(Aml::pkg_length(0xfffffff - 4), (B{0xcf, 0xff, 0xff, 0xff}));
  EXPECT_TRUE(Aml::pkg_length(0xfffffff - 3).empty());  // beyond 2^28 - 1
}

TEST(AmlPkgLength, PackagesAroundTheBoundaryUseTheRightForm) {
  // A package body is NumElements + elements; 61 one-byte elements + 1 = 62 -> 1-byte form.
  std::vector<Aml> ones(61, Aml::integer(1));
  B small = bytes_of(Aml::package(ones));
  ASSERT_EQ(small.size(), 1u + 1u + 62u);
  EXPECT_EQ(small[0], 0x12);
  EXPECT_EQ(small[1], 63);
  ones.push_back(Aml::integer(1));  // body 63 -> 2-byte form, total 65
  B bigger = bytes_of(Aml::package(ones));
  ASSERT_EQ(bigger.size(), 1u + 2u + 63u);
  EXPECT_EQ(bigger[1], 0x41);
  EXPECT_EQ(bigger[2], 0x04);
  EXPECT_EQ(bigger[3], 62);  // NumElements
}

TEST(AmlInteger, UsesTheShortestEncoding) {
  EXPECT_EQ(bytes_of(Aml::integer(0)), (B{0x00}));
  EXPECT_EQ(bytes_of(Aml::integer(1)), (B{0x01}));
  EXPECT_EQ(bytes_of(Aml::integer(2)), (B{0x0a, 0x02}));
  EXPECT_EQ(bytes_of(Aml::integer(0xff)), (B{0x0a, 0xff}));
  EXPECT_EQ(bytes_of(Aml::integer(0x100)), (B{0x0b, 0x00, 0x01}));
  EXPECT_EQ(bytes_of(Aml::integer(0xffff)), (B{0x0b, 0xff, 0xff}));
  EXPECT_EQ(bytes_of(Aml::integer(0x10000)), (B{0x0c, 0x00, 0x00, 0x01, 0x00}));
  EXPECT_EQ(bytes_of(Aml::integer(0xffffffff)), (B{0x0c, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(bytes_of(Aml::integer(0x100000000)),
            (B{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}));
}

TEST(AmlString, IsPrefixedAndNulTerminated) {
  EXPECT_EQ(bytes_of(Aml::string("AB")), (B{0x0d, 'A', 'B', 0x00}));
  EXPECT_FALSE(Aml::string(std::string("A\0B", 3)).ok());
  EXPECT_FALSE(Aml::string("caf\xc3\xa9").ok());
}

TEST(AmlEisaId, CompressesLettersAndHex) {
  // PNP0501 -> 0x0105d041 (the value iasl produces for EISAID("PNP0501")).
  EXPECT_EQ(bytes_of(Aml::eisa_id("PNP0501")), (B{0x0c, 0x41, 0xd0, 0x05, 0x01}));
  EXPECT_EQ(bytes_of(Aml::eisa_id("PNP0A03")), (B{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
  EXPECT_FALSE(Aml::eisa_id("PNP050").ok());
  EXPECT_FALSE(Aml::eisa_id("pnp0501").ok());
  EXPECT_FALSE(Aml::eisa_id("PNP05G1").ok());
}

TEST(AmlNameString, EncodesSegmentsPrefixesAndPadding) {
  EXPECT_EQ(*Aml::name_string("_HID"), (B{'_', 'H', 'I', 'D'}));
  EXPECT_EQ(*Aml::name_string("_SB"), (B{'_', 'S', 'B', '_'}));
  EXPECT_EQ(*Aml::name_string("\\"), (B{0x5c, 0x00}));
  EXPECT_EQ(*Aml::name_string("\\_S5"), (B{0x5c, '_', 'S', '5', '_'}));
  EXPECT_EQ(*Aml::name_string("\\_SB.VR00"),
            (B{0x5c, 0x2e, '_', 'S', 'B', '_', 'V', 'R', '0', '0'}));
  EXPECT_EQ(*Aml::name_string("^^A.B.C"),
            (B{0x5e, 0x5e, 0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'}));
}

TEST(AmlNameString, RejectsInvalidNames) {
  for (const char* bad : {"", "TOOLONG", "0ABC", "a", "A.", ".A", "A..B", "AB-C", "\\^A"}) {
    EXPECT_FALSE(Aml::name_string(bad).ok()) << bad;
  }
}

TEST(AmlTerms, NameDeviceScopeMethodReturn) {
  EXPECT_EQ(bytes_of(Aml::name("_UID", Aml::integer(5))),
            (B{0x08, '_', 'U', 'I', 'D', 0x0a, 0x05}));
  EXPECT_EQ(bytes_of(Aml::device("DEV", {Aml::name("_UID", Aml::integer(0))})),
            (B{0x5b, 0x82, 0x0b, 'D', 'E', 'V', '_', 0x08, '_', 'U', 'I', 'D', 0x00}));
  EXPECT_EQ(bytes_of(Aml::scope("\\", {})), (B{0x10, 0x03, 0x5c, 0x00}));
  // Method(_STA, 0, NotSerialized) { Return (0x0F) }
  EXPECT_EQ(bytes_of(Aml::method("_STA", 0, false, {Aml::return_value(Aml::integer(0x0f))})),
            (B{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}));
  EXPECT_EQ(bytes_of(Aml::method("M", 2, true, {}))[6], 0x0a);  // 2 args | Serialized
  EXPECT_FALSE(Aml::method("M", 8, false, {}).ok());
  EXPECT_EQ(bytes_of(Aml::package({Aml::integer(5), Aml::integer(0)})),
            (B{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}));
}

TEST(AmlTerms, AnErrorInsideIsReportedByTheOutermostTerm) {
  Aml dsdt = Aml::sequence({Aml::scope(
      "\\_SB", {Aml::device("OK00", {}), Aml::device("bad", {Aml::name("_UID", Aml::integer(0))})})});
  auto r = dsdt.encode();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("\"bad\""), std::string::npos) << r.error().message;
  std::vector<Aml> many(256, Aml::integer(0));
  EXPECT_FALSE(Aml::device("D", {Aml::name("P", Aml::package(many))}).ok());
}

TEST(AmlResources, DescriptorEncodings) {
  EXPECT_EQ(Resource::memory32_fixed(0xc0001000, 0x1000).bytes(),
            (B{0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00}));
  EXPECT_EQ(Resource::io(0x3f8, 0x3f8, 1, 8).bytes(),
            (B{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08}));
  // Consumer(bit 0), edge(bit 1), active low(bit 2), shared(bit 3).
  EXPECT_EQ(Resource::interrupt(5, Resource::Trigger::edge, Resource::Polarity::active_high).bytes(),
            (B{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}));
  EXPECT_EQ(Resource::interrupt(0x12345, Resource::Trigger::level, Resource::Polarity::active_low,
                                Resource::Sharing::shared)
                .bytes(),
            (B{0x89, 0x06, 0x00, 0x0d, 0x01, 0x45, 0x23, 0x01, 0x00}));
  B q = Resource::qword_memory(0x100000000, 0x2000).bytes();
  ASSERT_EQ(q.size(), 46u);
  EXPECT_EQ(q[0], 0x8a);
  EXPECT_EQ(q[1] | q[2] << 8, 43);
  EXPECT_EQ(q[14 + 4], 0x01);                     // minimum 0x1_0000_0000, byte 4
  EXPECT_EQ(q[22], 0xff);                         // maximum 0x1_0000_1fff
  EXPECT_EQ(q[23], 0x1f);
  EXPECT_EQ(q[38 + 1], 0x20);                     // length 0x2000
  EXPECT_FALSE(Resource::memory32_fixed(0xfffff000, 0x2000).error().empty());
  EXPECT_FALSE(Resource::qword_memory(~uint64_t{0}, 2).error().empty());
}

TEST(AmlResources, TemplateEndsWithAChecksummedEndTag) {
  B t = bytes_of(Aml::resource_template({Resource::io(0x3f8, 0x3f8, 1, 8)}));
  // BufferOp, PkgLength, BufferSize (ByteConst 10), 8 descriptor bytes, EndTag, checksum.
  ASSERT_EQ(t.size(), 1u + 1u + 2u + 10u);
  EXPECT_EQ(t[0], 0x11);
  EXPECT_EQ(t[1], 13);
  EXPECT_EQ(t[2], 0x0a);
  EXPECT_EQ(t[3], 10);
  EXPECT_EQ(t[12], 0x79);
  uint8_t sum = 0;
  for (size_t i = 4; i < t.size(); ++i) sum = static_cast<uint8_t>(sum + t[i]);
  EXPECT_EQ(sum, 0);
  EXPECT_FALSE(Aml::resource_template({Resource::memory32_fixed(0, 0)}).ok());
}

}  // namespace
}  // namespace flick::vmm::acpi
