// Shared declarations of the freestanding test guest (no libc; 64-bit long mode).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// How the guest was entered; passed from the assembly entry stubs in EDI.
enum boot_entry {
  BOOT_PVH = 1,        // PVH: 32-bit entry, info = struct hvm_start_info
  BOOT_BZIMAGE32 = 2,  // bzImage 32-bit boot protocol (code32_start), info = boot_params
  BOOT_BZIMAGE64 = 3,  // bzImage 64-bit boot protocol (payload + 0x200), info = boot_params
};

// Port I/O and MMIO.
static inline void outb(uint16_t port, uint8_t v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v) {
  __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void mmio_write8(uint64_t addr, uint8_t v) {
  *(volatile uint8_t *)(uintptr_t)addr = v;
}
static inline void mmio_write32(uint64_t addr, uint32_t v) {
  *(volatile uint32_t *)(uintptr_t)addr = v;
}
static inline uint32_t mmio_read32(uint64_t addr) {
  return *(volatile uint32_t *)(uintptr_t)addr;
}
static inline void cpu_relax(void) { __asm__ volatile("pause"); }
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}
__attribute__((noreturn)) static inline void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

// Freestanding replacements for what gcc may call.
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#ifndef TESTGUEST_LIBC_IMPL
// -ffreestanding turns builtins off; these let gcc inline the small fixed-size copies.
#define memcpy __builtin_memcpy
#define memset __builtin_memset
#define memcmp __builtin_memcmp
#endif

// Console on the COM1 UART; printf understands %s %c %d %u %x %lu %lx.
void con_putc(char c);
// The next byte the host sent to COM1, or -1 when none is waiting.
int con_poll(void);
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// One result line: "ok ..." or "FAIL ..." (counted).
void pass(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int g_failures;

// Boot information decoded from hvm_start_info or boot_params.
struct mem_range {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // 1 = RAM (e820 and hvm_memmap agree)
};
#define MAX_MEM_RANGES 128
struct boot_info {
  const char *entry_name;
  const char *cmdline;  // "" when absent
  uint64_t rsdp;        // 0 when the loader did not say
  uint32_t nranges;
  struct mem_range ranges[MAX_MEM_RANGES];
};
// Validates and decodes the boot structure; returns false (after printing why) if unusable.
bool bootinfo_read(uint32_t entry, uint64_t info, struct boot_info *out);

// ACPI facts the checks and the endings need.
struct acpi_gas {
  uint8_t space_id;  // 0 memory, 1 I/O
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;
  uint64_t address;
} __attribute__((packed));
#define MAX_CPUS 64
struct acpi_info {
  bool found;           // RSDP and XSDT usable
  bool hw_reduced;
  struct acpi_gas sleep_control;  // address 0 when absent
  struct acpi_gas reset_reg;
  uint8_t reset_value;
  uint32_t pm1a_control_port;  // fixed-hardware fallback (non-reduced FADTs)
  uint8_t s5_sleep_type;
  uint64_t lapic_addr;
  uint32_t ncpus;
  uint32_t apic_ids[MAX_CPUS];
  uint64_t ioapic_addr;  // 0 when absent
};
// Runs the ACPI checks (printing one line per table) and fills `out`.
void acpi_check(uint64_t rsdp_hint, struct acpi_info *out);
void acpi_gas_write(const struct acpi_gas *reg, uint32_t value);

// Starts every AP in `acpi` with INIT-SIPI-SIPI; returns how many checked in.
uint32_t smp_start_aps(const struct acpi_info *acpi);
