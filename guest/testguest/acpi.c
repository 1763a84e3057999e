// ACPI table checks (ACPI 6.4: 5.2.5 RSDP, 5.2.8 XSDT, 5.2.9 FADT, 5.2.12 MADT, 5.2.11.1 DSDT).
#include "testguest.h"

struct rsdp {
  char signature[8];
  uint8_t checksum;  // over the first 20 bytes
  char oem_id[6];
  uint8_t revision;
  uint32_t rsdt_address;
  uint32_t length;
  uint64_t xsdt_address;
  uint8_t extended_checksum;  // over `length` bytes
  uint8_t reserved[3];
} __attribute__((packed));

struct sdt_header {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  uint32_t creator_id;
  uint32_t creator_revision;
} __attribute__((packed));

// FADT field offsets (ACPI 6.4 table 5.9).
#define FADT_DSDT 40
#define FADT_PM1A_CNT_BLK 64
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL_REG 244
#define FADT_FLAG_HW_REDUCED_ACPI (1u << 20)
#define FADT_FLAG_RESET_REG_SUP (1u << 10)

#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_LOCAL_X2APIC 9
#define MADT_ENABLED 1u

#define DEFAULT_S5_SLEEP_TYPE 5

static uint8_t sum_bytes(const void *p, size_t n) {
  const uint8_t *b = p;
  uint8_t s = 0;
  while (n--) s += *b++;
  return s;
}

// One 8-byte compare per 16-byte step: the BIOS area holds thousands of candidates.
static const struct rsdp *rsdp_scan(uint64_t start, uint64_t len) {
  const uint64_t signature = 0x2052545020445352ull;  // "RSD PTR " little-endian
  for (uint64_t a = start; a + sizeof(struct rsdp) <= start + len; a += 16)
    if (*(const volatile uint64_t *)(uintptr_t)a == signature) return (const struct rsdp *)(uintptr_t)a;
  return NULL;
}

// The loader's pointer, else the legacy search areas (EBDA's first KiB, then the BIOS ROM).
static const struct rsdp *rsdp_find(uint64_t hint, const char **how) {
  if (hint) {
    *how = "given";
    return (const struct rsdp *)(uintptr_t)hint;
  }
  *how = "scanned";
  uint16_t ebda_segment = *(const volatile uint16_t *)(uintptr_t)0x40e;
  const struct rsdp *r = NULL;
  if (ebda_segment) r = rsdp_scan((uint64_t)ebda_segment << 4, 1024);
  return r ? r : rsdp_scan(0xe0000, 0x20000);
}

static bool table_ok(const struct sdt_header *t, const char *sig) {
  if (t == NULL || memcmp(t->signature, sig, 4) != 0) {
    fail("%s: missing", sig);
    return false;
  }
  if (t->length < sizeof(*t) || sum_bytes(t, t->length) != 0) {
    fail("%s: length %u, checksum does not sum to zero", sig, t->length);
    return false;
  }
  return true;
}

static uint32_t rd32(const void *base, size_t off) {
  uint32_t v;
  memcpy(&v, (const uint8_t *)base + off, 4);
  return v;
}

static uint64_t rd64(const void *base, size_t off) {
  uint64_t v;
  memcpy(&v, (const uint8_t *)base + off, 8);
  return v;
}

static const char *space_name(uint8_t space_id) {
  return space_id == 0 ? "mem" : space_id == 1 ? "io" : "?";
}

static void check_fadt(const struct sdt_header *fadt, struct acpi_info *out, uint64_t *dsdt) {
  const uint8_t *f = (const uint8_t *)fadt;
  uint32_t flags = fadt->length >= FADT_FLAGS + 4 ? rd32(f, FADT_FLAGS) : 0;
  out->hw_reduced = flags & FADT_FLAG_HW_REDUCED_ACPI;
  *dsdt = fadt->length >= FADT_X_DSDT + 8 ? rd64(f, FADT_X_DSDT) : 0;
  if (*dsdt == 0) *dsdt = rd32(f, FADT_DSDT);
  if (fadt->length >= FADT_RESET_VALUE + 1) {
    memcpy(&out->reset_reg, f + FADT_RESET_REG, sizeof(out->reset_reg));
    out->reset_value = f[FADT_RESET_VALUE];
  }
  if (fadt->length >= FADT_SLEEP_CONTROL_REG + 12)
    memcpy(&out->sleep_control, f + FADT_SLEEP_CONTROL_REG, sizeof(out->sleep_control));
  out->pm1a_control_port = rd32(f, FADT_PM1A_CNT_BLK);
  if (!out->hw_reduced) {
    fail("fadt: HW_REDUCED_ACPI not set (flags 0x%x)", flags);
  } else if (!(flags & FADT_FLAG_RESET_REG_SUP) || out->reset_reg.address == 0) {
    fail("fadt: no RESET_REG (flags 0x%x)", flags);
  } else if (out->sleep_control.address == 0) {
    fail("fadt: no SLEEP_CONTROL_REG (length %u)", fadt->length);
  } else {
    pass("fadt hw-reduced sleep=%s:0x%lx reset=%s:0x%lx/%u", space_name(out->sleep_control.space_id),
         out->sleep_control.address, space_name(out->reset_reg.space_id), out->reset_reg.address,
         out->reset_value);
  }
}

static void check_madt(const struct sdt_header *madt, struct acpi_info *out) {
  const uint8_t *m = (const uint8_t *)madt;
  out->lapic_addr = rd32(m, 36);
  for (uint32_t off = 44; off + 2 <= madt->length;) {
    uint8_t type = m[off], len = m[off + 1];
    if (len < 2 || off + len > madt->length) {
      fail("madt: entry at %u has length %u", off, len);
      return;
    }
    if (type == MADT_LOCAL_APIC && len >= 8 && (rd32(m, off + 4) & MADT_ENABLED)) {
      if (out->ncpus < MAX_CPUS) out->apic_ids[out->ncpus++] = m[off + 3];
    } else if (type == MADT_LOCAL_X2APIC && len >= 16 && (rd32(m, off + 8) & MADT_ENABLED)) {
      if (out->ncpus < MAX_CPUS) out->apic_ids[out->ncpus++] = rd32(m, off + 4);
    } else if (type == MADT_IO_APIC && len >= 12) {
      out->ioapic_addr = rd32(m, off + 4);
    }
    off += len;
  }
  if (out->ioapic_addr == 0)
    fail("madt: no IOAPIC entry (%u local APICs)", out->ncpus);
  else
    pass("madt lapics=%u lapic=0x%lx ioapic=0x%lx", out->ncpus, out->lapic_addr, out->ioapic_addr);
}

// Finds the first element of the \_S5 package: NameOp "_S5_" PackageOp PkgLength NumElements
// then a Zero/One/BytePrefix value (ACPI 6.4 20.2.5). Falls back to the value flick uses.
static uint8_t find_s5_sleep_type(const struct sdt_header *dsdt, bool *found) {
  const uint8_t *p = (const uint8_t *)dsdt;
  *found = false;
  for (uint32_t i = sizeof(*dsdt); i + 8 <= dsdt->length; ++i) {
    if (p[i] != '_' || memcmp(p + i, "_S5_", 4) != 0 || p[i + 4] != 0x12) continue;
    uint32_t j = i + 5 + 1 + (p[i + 5] >> 6) + 1;  // PkgLength lead byte + extra bytes, NumElements
    if (j + 1 >= dsdt->length) break;
    *found = true;
    if (p[j] == 0x0a) return p[j + 1];  // BytePrefix
    if (p[j] == 0x00 || p[j] == 0x01) return p[j];  // ZeroOp, OneOp
    *found = false;
    break;
  }
  return DEFAULT_S5_SLEEP_TYPE;
}

void acpi_check(uint64_t rsdp_hint, struct acpi_info *out) {
  memset(out, 0, sizeof(*out));
  out->lapic_addr = 0xfee00000;
  out->s5_sleep_type = DEFAULT_S5_SLEEP_TYPE;
  const char *how;
  const struct rsdp *r = rsdp_find(rsdp_hint, &how);
  if (r == NULL || memcmp(r->signature, "RSD PTR ", 8) != 0) {
    fail("rsdp: not found (%s 0x%lx)", how, rsdp_hint);
    return;
  }
  if (sum_bytes(r, 20) != 0 || r->revision < 2 || r->length < sizeof(*r) ||
      sum_bytes(r, r->length) != 0 || r->xsdt_address == 0) {
    fail("rsdp: at 0x%lx bad (revision %u length %u xsdt 0x%lx)", (uint64_t)(uintptr_t)r,
         r->revision, r->length, r->xsdt_address);
    return;
  }
  pass("rsdp 0x%lx %s", (uint64_t)(uintptr_t)r, how);
  const struct sdt_header *xsdt = (const struct sdt_header *)(uintptr_t)r->xsdt_address;
  if (!table_ok(xsdt, "XSDT")) return;
  const struct sdt_header *fadt = NULL, *madt = NULL;
  uint32_t n = (xsdt->length - sizeof(*xsdt)) / 8;
  for (uint32_t i = 0; i < n; ++i) {
    const struct sdt_header *t =
        (const struct sdt_header *)(uintptr_t)rd64(xsdt, sizeof(*xsdt) + 8 * i);
    if (memcmp(t->signature, "FACP", 4) == 0) fadt = t;
    if (memcmp(t->signature, "APIC", 4) == 0) madt = t;
  }
  pass("xsdt tables=%u", n);
  out->found = true;
  uint64_t dsdt_addr = 0;
  if (table_ok(fadt, "FACP")) check_fadt(fadt, out, &dsdt_addr);
  if (table_ok(madt, "APIC")) check_madt(madt, out);
  const struct sdt_header *dsdt = (const struct sdt_header *)(uintptr_t)dsdt_addr;
  if (dsdt_addr && table_ok(dsdt, "DSDT")) {
    bool s5;
    out->s5_sleep_type = find_s5_sleep_type(dsdt, &s5);
    pass("dsdt length=%u s5=%u%s", dsdt->length, out->s5_sleep_type, s5 ? "" : " (default)");
  } else if (!dsdt_addr) {
    fail("dsdt: FADT gives no DSDT address");
  }
}

void acpi_gas_write(const struct acpi_gas *reg, uint32_t value) {
  uint8_t size = reg->access_size ? reg->access_size : (uint8_t)(reg->bit_width / 8 == 4 ? 3 : reg->bit_width / 8);
  value <<= reg->bit_offset;
  if (reg->space_id == 1) {
    uint16_t port = (uint16_t)reg->address;
    if (size == 3) outl(port, value);
    else if (size == 2) outw(port, (uint16_t)value);
    else outb(port, (uint8_t)value);
  } else if (reg->space_id == 0) {
    if (size == 3) mmio_write32(reg->address, value);
    else if (size == 2) *(volatile uint16_t *)(uintptr_t)reg->address = (uint16_t)value;
    else mmio_write8(reg->address, (uint8_t)value);
  }
}
