// Synthetic kernel images for the loader tests: bzImages and ELF files built byte by byte
// with the real header layouts.
#pragma once

#include "base/guest_memory.h"
#include "vmm/layout.h"
#include "vmm/loader/boot_abi.h"

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace flick::vmm::testing {

using Bytes = std::vector<std::byte>;

inline GuestMemory make_memory(uint64_t size) {
  auto ranges = layout::ram_ranges(size);
  auto m = GuestMemory::create(ranges);
  if (!m.ok()) abort();
  return std::move(m).value();
}

// A header like a current x86-64 kernel's: protocol 2.15, relocatable, 64-bit.
inline SetupHeader default_header() {
  SetupHeader h;
  std::memset(&h, 0, sizeof h);
  h.setup_sects = 4;
  h.boot_flag = kBootFlag;
  h.jump = 0x6aeb;  // "jmp 0x26c": header ends at 0x26c
  h.header = kHdrsMagic;
  h.version = 0x020f;
  h.loadflags = kLoadedHigh;
  h.code32_start = 0x100000;
  h.initrd_addr_max = 0x7fffffff;
  h.kernel_alignment = 0x200000;
  h.relocatable_kernel = 1;
  h.min_alignment = 21;
  h.xloadflags = kXlfKernel64 | kXlfCanBeLoadedAbove4G;
  h.cmdline_size = 2047;
  h.pref_address = 0x1000000;
  h.init_size = 0x400000;
  return h;
}

// Setup sectors, then `payload_size` bytes of payload whose byte i is (i * 7 + 1) & 0xff.
inline Bytes make_bzimage(SetupHeader h, uint64_t payload_size = 0x2000) {
  uint64_t sects = h.setup_sects ? h.setup_sects : 4;
  uint64_t setup = (sects + 1) * 512;
  if (h.syssize == 0) h.syssize = static_cast<uint32_t>(payload_size / 16);
  Bytes f(setup + payload_size);
  std::memcpy(f.data() + kSetupHeaderOffset, &h, sizeof h);
  for (uint64_t i = 0; i < payload_size; ++i)
    f[setup + i] = static_cast<std::byte>((i * 7 + 1) & 0xff);
  return f;
}

struct Segment {
  uint32_t type = PT_LOAD;
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  Bytes data;
  uint64_t mem_size = 0;  // >= data.size() unless a test wants otherwise
  // Overrides for malformed cases.
  bool override_offset = false;
  uint64_t offset = 0;
  bool override_filesz = false;
  uint64_t filesz = 0;
};

inline Bytes xen_note(uint32_t type, const Bytes& desc) {
  Bytes n(12 + 4 + ((desc.size() + 3) & ~size_t{3}));
  uint32_t f[3] = {4, static_cast<uint32_t>(desc.size()), type};
  std::memcpy(n.data(), f, 12);
  std::memcpy(n.data() + 12, "Xen", 4);
  std::memcpy(n.data() + 16, desc.data(), desc.size());
  return n;
}

inline Bytes le_bytes(uint64_t v, size_t n) {
  Bytes b(n);
  std::memcpy(b.data(), &v, n);
  return b;
}

// An ELF executable with the given program headers; segment data follows the table.
template <bool Is64>
Bytes make_elf(uint64_t entry, const std::vector<Segment>& segs) {
  using Ehdr = std::conditional_t<Is64, Elf64_Ehdr, Elf32_Ehdr>;
  using Phdr = std::conditional_t<Is64, Elf64_Phdr, Elf32_Phdr>;
  Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = Is64 ? ELFCLASS64 : ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = Is64 ? EM_X86_64 : EM_386;
  eh.e_version = EV_CURRENT;
  eh.e_entry = static_cast<decltype(eh.e_entry)>(entry);
  eh.e_phoff = sizeof(Ehdr);
  eh.e_ehsize = sizeof(Ehdr);
  eh.e_phentsize = sizeof(Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size());
  Bytes f(sizeof(Ehdr) + segs.size() * sizeof(Phdr));
  std::memcpy(f.data(), &eh, sizeof eh);
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    Phdr ph{};
    ph.p_type = s.type;
    ph.p_offset = static_cast<decltype(ph.p_offset)>(s.override_offset ? s.offset : f.size());
    ph.p_vaddr = static_cast<decltype(ph.p_vaddr)>(s.vaddr ? s.vaddr : s.paddr);
    ph.p_paddr = static_cast<decltype(ph.p_paddr)>(s.paddr);
    ph.p_filesz = static_cast<decltype(ph.p_filesz)>(s.override_filesz ? s.filesz
                                                                        : s.data.size());
    ph.p_memsz = static_cast<decltype(ph.p_memsz)>(s.type == PT_LOAD ? s.mem_size : 0);
    ph.p_align = 4;
    std::memcpy(f.data() + sizeof(Ehdr) + i * sizeof(Phdr), &ph, sizeof ph);
    f.insert(f.end(), s.data.begin(), s.data.end());
  }
  return f;
}

inline Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i + seed) & 0xff);
  return b;
}

template <class T>
T at(const GuestMemory& mem, uint64_t addr) {
  auto v = mem.read_obj<T>(GuestAddress{addr});
  if (!v.ok()) abort();
  return *v;
}

}  // namespace flick::vmm::testing
