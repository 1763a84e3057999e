// AP start-up with INIT-SIPI-SIPI through the xAPIC (Intel SDM vol. 3A 8.4.4, 10.6.1).
#include "testguest.h"

// A real-mode page below 1 MiB the VMM leaves free (layout::kApTrampoline); SIPI vector 0x30.
#define TRAMPOLINE_ADDR 0x30000u

#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_INIT_ASSERT 0x4500u  // level assert, INIT
#define ICR_STARTUP 0x4600u      // level assert, start-up; vector in bits 0-7

// Bounds the waits so a VMM that never starts an AP fails the check instead of hanging
// (each poll is a few emulated instructions: ~2 s worst case under instruction emulation).
#define ICR_POLLS 1000
#define CHECKIN_POLLS 1000000

extern const uint8_t ap_trampoline_start[], ap_trampoline_counter[], ap_trampoline_end[];

static void icr_send(uint64_t lapic, uint32_t apic_id, uint32_t low) {
  mmio_write32(lapic + LAPIC_ICR_HIGH, apic_id << 24);
  mmio_write32(lapic + LAPIC_ICR_LOW, low);
  for (int i = 0; i < ICR_POLLS && (mmio_read32(lapic + LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING); ++i)
    cpu_relax();
}

uint32_t smp_start_aps(const struct acpi_info *acpi) {
  uint64_t lapic = acpi->lapic_addr;
  uint32_t bsp_id = mmio_read32(lapic + LAPIC_ID) >> 24;
  memcpy((void *)(uintptr_t)TRAMPOLINE_ADDR, ap_trampoline_start,
         (size_t)(ap_trampoline_end - ap_trampoline_start));
  volatile uint32_t *counter =
      (volatile uint32_t *)(uintptr_t)(TRAMPOLINE_ADDR + (ap_trampoline_counter - ap_trampoline_start));
  *counter = 0;
  mmio_write32(lapic + LAPIC_SVR, 0x1ff);  // software-enable the local APIC
  uint32_t sent = 0;
  for (uint32_t i = 0; i < acpi->ncpus; ++i) {
    uint32_t id = acpi->apic_ids[i];
    if (id == bsp_id || id > 0xff) continue;  // xAPIC addresses 8-bit IDs only
    icr_send(lapic, id, ICR_INIT_ASSERT);
    icr_send(lapic, id, ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
    icr_send(lapic, id, ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
    ++sent;
  }
  for (int i = 0; i < CHECKIN_POLLS && *counter < sent; ++i) cpu_relax();
  return *counter;
}
