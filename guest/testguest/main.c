// The test guest's checks, shared by the PVH and bzImage entries. One line per check on COM1,
// then "flick-testguest: PASS" or "flick-testguest: FAIL <n>", then the ending `mode=` selects.
#include "testguest.h"

#define MIB (1024ul * 1024)
#define E820_RAM 1
#define BIOS_HOLE_START 0x9fc00ul  // layout::kEbdaStart: RAM below it, none up to 1 MiB
#define HIGH_MEM 0x100000ul
#define RAM_SLACK 0x2000ul  // "within a page or so" of the expected total
#define BOOT_TIMER_PORT 0x604
#define PVPANIC_PORT 0x505     /* pvpanic: bit 0 = panicked */
#define BOOT_TIMER_MMIO 0xc0000000ul
#define BOOT_TIMER_MAGIC 123
#define I8042_COMMAND 0x64
#define I8042_RESET 0xfe
#define QEMU_DEBUG_EXIT_PORT 0xf4  // isa-debug-exit, only when the command line says "qemu"
#define UNASSIGNED_PORT 0x0ef0
#define UNASSIGNED_MMIO 0xd0000000ul
#define ACPI_SLP_EN 0x20
#define ACPI_PM1_SLP_EN (1u << 13)
#define SHUTDOWN_GRACE_POLLS 200000
#define TICK_SPIN 20000u  /* busy-loop iterations between two ticks of mode=count */

// Finds "key=value" or a bare "key" among the space-separated words; returns its value
// (terminated by a space or NUL) or NULL.
static const char *cmdline_find(const char *cmd, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = cmd; *p;) {
    while (*p == ' ') ++p;
    const char *word = p;
    while (*p && *p != ' ') ++p;
    if ((size_t)(p - word) >= klen && memcmp(word, key, klen) == 0) {
      if (word[klen] == '=') return word + klen + 1;
      if (word + klen == p) return p;
    }
  }
  return NULL;
}

static bool value_is(const char *v, const char *want) {
  size_t n = strlen(want);
  return v && memcmp(v, want, n) == 0 && (v[n] == ' ' || v[n] == '\0');
}

static int64_t cmdline_number(const char *cmd, const char *key) {
  const char *v = cmdline_find(cmd, key);
  if (v == NULL || *v < '0' || *v > '9') return -1;
  int64_t n = 0;
  while (*v >= '0' && *v <= '9') n = n * 10 + (*v++ - '0');
  return n;
}

static bool range_contains(const struct mem_range *r, uint64_t addr) {
  return r->type == E820_RAM && addr >= r->addr && addr - r->addr < r->size;
}

// `qemu`: QEMU microvm's firmware (qboot) ends its PVH memory map with an all-zero entry;
// tolerated only there, so a VMM under test gets the strict check.
static void check_memory_map(const struct boot_info *bi, int64_t mem_mib, bool qemu) {
  bool low = false, high = false;
  uint64_t total = 0;

  for (uint32_t i = 0; i < bi->nranges; ++i) {
    const struct mem_range *a = &bi->ranges[i];
    if (qemu && i + 1 == bi->nranges && a->addr == 0 && a->size == 0 && a->type == 0) break;
    if (a->size == 0 || a->addr + a->size < a->addr) {
      fail("e820: entry %u [0x%lx +0x%lx) empty or wraps", i, a->addr, a->size);
      return;
    }
    for (uint32_t j = 0; j < i; ++j) {
      const struct mem_range *b = &bi->ranges[j];
      if (a->addr < b->addr + b->size && b->addr < a->addr + a->size) {
        fail("e820: entries %u and %u overlap at 0x%lx", j, i, a->addr);
        return;
      }
    }
    low |= range_contains(a, 0);
    high |= range_contains(a, HIGH_MEM);
    if (a->type == E820_RAM) total += a->size;
  }
  if (!low || !high) {
    fail("e820: no RAM at %s (%u entries)", low ? "1 MiB" : "0", bi->nranges);
    return;
  }
  if (mem_mib > 0) {
    uint64_t want = (uint64_t)mem_mib * MIB - (HIGH_MEM - BIOS_HOLE_START);
    uint64_t diff = total > want ? total - want : want - total;
    if (diff > RAM_SLACK) {
      fail("e820: RAM 0x%lx, expected 0x%lx for mem=%ld", total, want, mem_mib);
      return;
    }
  }
  pass("e820 n=%u ram=0x%lx", bi->nranges, total);
}

static void check_cpus(const struct acpi_info *acpi, int64_t want_cpus) {
  if (want_cpus > 0 && acpi->ncpus != (uint64_t)want_cpus)
    fail("madt: %u enabled local APICs, cpus=%ld", acpi->ncpus, want_cpus);
  if (acpi->ncpus <= 1) return;
  uint32_t started = smp_start_aps(acpi);
  if (started + 1 == acpi->ncpus)
    pass("smp %u/%u", started + 1, acpi->ncpus);
  else
    fail("smp %u/%u", started + 1, acpi->ncpus);
}

static void check_badio(void) {
  uint8_t port_value = inb(UNASSIGNED_PORT);
  outb(UNASSIGNED_PORT, 0x5a);
  uint32_t mmio_value = mmio_read32(UNASSIGNED_MMIO);
  mmio_write32(UNASSIGNED_MMIO, 0x5a5a5a5a);
  pass("badio port=0x%x:0x%x mmio=0x%lx:0x%x", UNASSIGNED_PORT, port_value, UNASSIGNED_MMIO,
       mmio_value);
}

// mode=count: prints "tick N" lines until the host sends 'q' on COM1, then checks that a
// pattern written into memory before the first tick is intact and that the TSC never went
// back. A snapshot taken between two ticks and restored must continue the count.
static void count_ticks(void) {
  static uint8_t pattern[512 * 1024];
  for (size_t i = 0; i < sizeof pattern; ++i) pattern[i] = (uint8_t)(i * 7 + i / 4096);
  uint64_t last_tsc = rdtsc();
  unsigned tick = 0, tsc_back = 0;
  while (con_poll() != 'q') {
    for (volatile unsigned spin = 0; spin < TICK_SPIN; ++spin) {
    }
    const uint64_t now = rdtsc();
    if (now < last_tsc) ++tsc_back;
    last_tsc = now;
    con_printf("tick %u\n", ++tick);
  }
  size_t bad = 0;
  for (size_t i = 0; i < sizeof pattern; ++i) bad += pattern[i] != (uint8_t)(i * 7 + i / 4096);
  if (bad)
    fail("count: %lu bytes of the memory pattern changed", (uint64_t)bad);
  else
    pass("count %u ticks, memory pattern intact", tick);
  if (tsc_back)
    fail("count: the TSC went back %u times", tsc_back);
}

static void grace_period(void) {
  for (int i = 0; i < SHUTDOWN_GRACE_POLLS; ++i) cpu_relax();
}

__attribute__((noreturn)) static void reset_via_i8042(void) {
  outb(I8042_COMMAND, I8042_RESET);
  grace_period();
  con_printf("FAIL i8042 reset returned\n");
  halt_forever();
}

__attribute__((noreturn)) static void reset_via_acpi(const struct acpi_info *acpi) {
  if (acpi->reset_reg.address) {
    acpi_gas_write(&acpi->reset_reg, acpi->reset_value);
    grace_period();
    con_printf("FAIL acpi reset returned\n");
  }
  reset_via_i8042();
}

__attribute__((noreturn)) static void power_off(const struct acpi_info *acpi, bool qemu) {
  if (acpi->sleep_control.address) {
    acpi_gas_write(&acpi->sleep_control, (uint32_t)acpi->s5_sleep_type << 2 | ACPI_SLP_EN);
  } else if (acpi->pm1a_control_port) {
    outw((uint16_t)acpi->pm1a_control_port, (uint16_t)(acpi->s5_sleep_type << 10 | ACPI_PM1_SLP_EN));
  }
  grace_period();
  con_printf("FAIL acpi power-off returned\n");
  if (qemu) outb(QEMU_DEBUG_EXIT_PORT, 0);
  reset_via_i8042();
}

__attribute__((noreturn)) static void triple_fault(void) {
  static const struct {
    uint16_t limit;
    uint64_t base;
  } __attribute__((packed)) empty_idt = {0, 0};
  __asm__ volatile("lidt %0; int3; ud2" : : "m"(empty_idt));
  halt_forever();
}

__attribute__((noreturn)) void testguest_main(uint32_t entry, uint64_t info) {
  static struct boot_info bi;
  static struct acpi_info acpi;
  con_printf("flick-testguest: start\n");
  bool have_info = bootinfo_read(entry, info, &bi);
  const char *cmd = bi.cmdline;
  if (have_info) {
    if (cmdline_find(cmd, "testguest"))
      pass("cmdline %s \"%s\"", bi.entry_name, cmd);
    else
      fail("cmdline %s: no \"testguest\" word in \"%s\"", bi.entry_name, cmd);
    check_memory_map(&bi, cmdline_number(cmd, "mem"), cmdline_find(cmd, "qemu") != NULL);
  }
  acpi_check(bi.rsdp, &acpi);

  outb(BOOT_TIMER_PORT, BOOT_TIMER_MAGIC);
  mmio_write8(BOOT_TIMER_MMIO, BOOT_TIMER_MAGIC);
  pass("boottimer");

  check_cpus(&acpi, cmdline_number(cmd, "cpus"));
  const char *mode = cmdline_find(cmd, "mode");
  if (value_is(mode, "badio")) check_badio();
  if (value_is(mode, "count")) count_ticks();

  if (g_failures)
    con_printf("flick-testguest: FAIL %d\n", g_failures);
  else
    con_printf("flick-testguest: PASS\n");

  if (value_is(mode, "reboot")) reset_via_acpi(&acpi);
  if (value_is(mode, "i8042")) reset_via_i8042();
  if (value_is(mode, "triplefault")) triple_fault();
  if (value_is(mode, "hang")) halt_forever();
  if (value_is(mode, "panic")) {
    con_printf("Kernel panic - not syncing: testguest\n");
    outb(PVPANIC_PORT, 1);  /* what Linux's pvpanic driver does on panic */
    reset_via_acpi(&acpi);
  }
  if (mode && !value_is(mode, "poweroff") && !value_is(mode, "badio") && !value_is(mode, "count"))
    con_printf("FAIL unknown mode, powering off\n");
  power_off(&acpi, cmdline_find(cmd, "qemu") != NULL);
}
