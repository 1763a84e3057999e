#include "vmm/cpu_setup.h"

#include <gtest/gtest.h>

namespace flick::vmm {
namespace {

kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index = 0, uint32_t flags = 0) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = index;
  e.flags = flags;
  return e;
}

TEST(Cpuid, GivesEachVcpuItsApicIdAndKeepsHypervisorLeaves) {
  auto hv = leaf(0x40000000);
  hv.eax = 0x40000001;
  hv.ebx = 0x4b4d564b;  // "KVMK"
  CpuidTable supported({leaf(1), leaf(0xb, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
                        leaf(0xb, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX), hv});
  for (uint32_t id = 0; id < 4; ++id) {
    CpuidTable t = cpuid_for_vcpu(supported, id, 4);
    EXPECT_EQ(t.find(1)->ebx >> 24, id);
    EXPECT_EQ((t.find(1)->ebx >> 16) & 0xff, 4u);
    EXPECT_TRUE(t.find(1)->ecx & (1u << 31));
    EXPECT_EQ(t.find(0xb, 0)->edx, id);
    EXPECT_EQ(t.find(0xb, 1)->ebx, 4u);  // cores at the core level
    EXPECT_EQ(t.find(0xb, 1)->eax, 2u);  // APIC ID shift for 4 cores
    EXPECT_EQ(t.find(0x40000000)->ebx, hv.ebx);
    EXPECT_EQ(t.find(0x40000000)->eax, hv.eax);
  }
}

TEST(Cpuid, TscDeadlineTimerOnlyWhenKvmHasTheCapability) {
  constexpr uint32_t kTscDeadline = 1u << 24;
  auto l1 = leaf(1);
  l1.ecx = 0x1;  // SSE3, to see that other bits stay
  CpuidTable without({l1});
  add_capability_features(without, {});
  EXPECT_EQ(without.find(1)->ecx, 0x1u);

  CpuidTable with({l1});
  add_capability_features(with, {.tsc_deadline_timer = true});
  EXPECT_EQ(with.find(1)->ecx, 0x1u | kTscDeadline);
  // Every vCPU's table keeps it.
  for (uint32_t id = 0; id < 2; ++id)
    EXPECT_TRUE(cpuid_for_vcpu(with, id, 2).find(1)->ecx & kTscDeadline);

  CpuidTable no_leaf1({leaf(0)});
  add_capability_features(no_leaf1, {.tsc_deadline_timer = true});
  EXPECT_EQ(no_leaf1.entries().size(), 1u);
}

TEST(Msrs, OnlyThoseKvmCanSet) {
  auto all = boot_msrs({0x174, 0x2ff, 0xc0000082});
  ASSERT_EQ(all.size(), 3u);
  for (auto& m : all)
    if (m.index == 0x2ff) {
      EXPECT_EQ(m.data, (1u << 11) | 6u);
    }
  EXPECT_TRUE(boot_msrs({}).empty());
}

}  // namespace
}  // namespace flick::vmm
