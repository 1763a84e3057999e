#include "vmm/loader/elf.h"

#include "vmm/layout.h"
#include "base/hex.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace flick::vmm {

namespace {

Error malformed(const std::string& why) { return make_error(Errc::malformed, "ELF kernel: " + why); }

// Reads a T at `offset` if [offset, offset + sizeof(T)) lies in the file.
template <class T>
bool read_at(std::span<const std::byte> file, uint64_t offset, T* out) {
  if (offset > file.size() || file.size() - offset < sizeof(T)) return false;
  std::memcpy(out, file.data() + offset, sizeof(T));
  return true;
}

// The common subset of Elf32_Phdr and Elf64_Phdr.
struct ProgramHeader {
  uint32_t type;
  uint64_t offset, vaddr, paddr, filesz, memsz;
};

template <class Phdr>
ProgramHeader widen(const Phdr& p) {
  return {p.p_type, p.p_offset, p.p_vaddr, p.p_paddr, p.p_filesz, p.p_memsz};
}

// Walks the notes in one PT_NOTE segment looking for Xen's PHYS32_ENTRY (the ELF note format:
// namesz, descsz, type, then name and desc each padded to 4 bytes).
Result<void> scan_notes(std::span<const std::byte> notes, uint64_t seg_offset,
                        std::optional<uint64_t>* pvh_entry) {
  uint64_t pos = 0;
  while (notes.size() - pos >= 12) {
    uint32_t f[3];
    std::memcpy(f, notes.data() + pos, sizeof f);
    uint64_t name_at = pos + 12;
    uint64_t desc_at = name_at + ((uint64_t{f[0]} + 3) & ~uint64_t{3});
    uint64_t next = desc_at + ((uint64_t{f[1]} + 3) & ~uint64_t{3});
    if (desc_at + f[1] > notes.size())
      return malformed("note at file offset " + hex(seg_offset + pos) +
                       " runs past the end of its PT_NOTE segment");
    bool is_xen = f[0] == 4 && std::memcmp(notes.data() + name_at, "Xen", 4) == 0;
    if (is_xen && f[2] == kXenElfnotePhys32Entry) {
      uint64_t entry = 0;
      if (f[1] == 4) {
        uint32_t e32;
        std::memcpy(&e32, notes.data() + desc_at, 4);
        entry = e32;
      } else if (f[1] == 8) {
        std::memcpy(&entry, notes.data() + desc_at, 8);
      } else {
        return malformed("XEN_ELFNOTE_PHYS32_ENTRY note has a " + std::to_string(f[1]) +
                         "-byte descriptor; 4 or 8 expected");
      }
      *pvh_entry = entry;
    }
    if (next >= notes.size()) break;
    pos = next;
  }
  return {};
}

template <class Ehdr, class Phdr>
Result<void> parse_program_headers(std::span<const std::byte> file, const Ehdr& eh,
                                   ElfImage* image) {
  if (eh.e_phnum == 0) return malformed("no program headers");
  if (eh.e_phentsize != sizeof(Phdr))
    return malformed("program header size is " + std::to_string(eh.e_phentsize) +
                     " bytes; " + std::to_string(sizeof(Phdr)) + " expected");
  // e_phoff is checked first so the table's end cannot overflow.
  uint64_t table_size = uint64_t{eh.e_phnum} * sizeof(Phdr);
  if (eh.e_phoff > file.size() || file.size() - eh.e_phoff < table_size)
    return malformed("program header table at " + hex(eh.e_phoff) + " (" +
                     std::to_string(eh.e_phnum) + " entries) lies outside the " +
                     std::to_string(file.size()) + "-byte file");
  for (uint64_t i = 0; i < eh.e_phnum; ++i) {
    Phdr raw;
    read_at(file, eh.e_phoff + i * sizeof(Phdr), &raw);
    ProgramHeader ph = widen(raw);
    std::string which = "segment " + std::to_string(i);
    if (ph.type != PT_LOAD && ph.type != PT_NOTE) continue;
    uint64_t file_end;
    if (__builtin_add_overflow(ph.offset, ph.filesz, &file_end) || file_end > file.size())
      return malformed(which + ": file range " + hex(ph.offset) + "+" + hex(ph.filesz) +
                       " lies outside the " + std::to_string(file.size()) + "-byte file");
    if (ph.type == PT_NOTE) {
      FLICK_TRY(scan_notes(file.subspan(ph.offset, ph.filesz), ph.offset, &image->pvh_entry));
      continue;
    }
    if (ph.filesz > ph.memsz)
      return malformed(which + ": p_filesz " + hex(ph.filesz) + " is larger than p_memsz " +
                       hex(ph.memsz));
    uint64_t end;
    if (__builtin_add_overflow(ph.paddr, ph.memsz, &end) ||
        __builtin_add_overflow(ph.vaddr, ph.memsz, &end))
      return malformed(which + ": address " + hex(ph.paddr) + " + size " + hex(ph.memsz) +
                       " overflows");
    if (ph.memsz == 0) continue;
    image->segments.push_back({ph.offset, ph.filesz, ph.paddr, ph.vaddr, ph.memsz});
  }
  if (image->segments.empty()) return malformed("no PT_LOAD segment with contents");
  std::sort(image->segments.begin(), image->segments.end(),
            [](const ElfSegment& a, const ElfSegment& b) { return a.paddr < b.paddr; });
  for (size_t i = 1; i < image->segments.size(); ++i) {
    const auto& prev = image->segments[i - 1];
    if (prev.paddr + prev.mem_size > image->segments[i].paddr)
      return malformed("PT_LOAD segments at " + hex(prev.paddr) + " and " +
                       hex(image->segments[i].paddr) + " overlap");
  }
  image->e_entry = eh.e_entry;
  return {};
}

const ElfSegment* segment_holding(const ElfImage& image, uint64_t addr, bool physical) {
  for (const auto& s : image.segments) {
    uint64_t base = physical ? s.paddr : s.vaddr;
    if (addr >= base && addr - base < s.mem_size) return &s;
  }
  return nullptr;
}

}  // namespace

Result<ElfImage> parse_elf(std::span<const std::byte> file) {
  unsigned char ident[EI_NIDENT];
  if (!read_at(file, 0, &ident)) return malformed("file is truncated: no ELF identification");
  if (std::memcmp(ident, ELFMAG, SELFMAG) != 0) return malformed("no \\x7fELF magic");
  if (ident[EI_DATA] != ELFDATA2LSB) return malformed("not little-endian");
  if (ident[EI_VERSION] != EV_CURRENT)
    return malformed("unknown ELF version " + std::to_string(ident[EI_VERSION]));
  ElfImage image;
  if (ident[EI_CLASS] == ELFCLASS64) {
    Elf64_Ehdr eh;
    if (!read_at(file, 0, &eh)) return malformed("file is truncated inside the ELF64 header");
    if (eh.e_machine != EM_X86_64)
      return make_error(Errc::unsupported, "ELF kernel: machine " +
                                               std::to_string(eh.e_machine) + " is not x86-64");
    if (eh.e_type != ET_EXEC)
      return make_error(Errc::unsupported, "ELF kernel: not an executable (e_type " +
                                               std::to_string(eh.e_type) + ")");
    image.is_64bit = true;
    FLICK_TRY((parse_program_headers<Elf64_Ehdr, Elf64_Phdr>(file, eh, &image)));
  } else if (ident[EI_CLASS] == ELFCLASS32) {
    Elf32_Ehdr eh;
    if (!read_at(file, 0, &eh)) return malformed("file is truncated inside the ELF32 header");
    if (eh.e_machine != EM_386)
      return make_error(Errc::unsupported, "ELF kernel: 32-bit machine " +
                                               std::to_string(eh.e_machine) + " is not i386");
    if (eh.e_type != ET_EXEC)
      return make_error(Errc::unsupported, "ELF kernel: not an executable (e_type " +
                                               std::to_string(eh.e_type) + ")");
    FLICK_TRY((parse_program_headers<Elf32_Ehdr, Elf32_Phdr>(file, eh, &image)));
  } else {
    return malformed("unknown ELF class " + std::to_string(ident[EI_CLASS]));
  }
  return image;
}

Result<uint64_t> elf_physical_entry(const ElfImage& image) {
  if (segment_holding(image, image.e_entry, true)) return image.e_entry;
  if (const ElfSegment* s = segment_holding(image, image.e_entry, false))
    return image.e_entry - s->vaddr + s->paddr;
  return malformed("entry point " + hex(image.e_entry) +
                   " is in no PT_LOAD segment, physically or virtually");
}

Result<LoadedKernel> load_elf(GuestMemory& mem, std::span<const std::byte> file,
                              EntryMode preferred) {
  FLICK_TRY_ASSIGN(ElfImage image, parse_elf(file));
  LoadedKernel k;
  bool pvh = image.pvh_entry && (preferred == EntryMode::Pvh32 || !image.is_64bit);
  if (pvh) {
    uint64_t e = *image.pvh_entry;
    if (e >= layout::kMmioHoleStart || !segment_holding(image, e, true))
      return malformed("PVH entry " + hex(e) + " is not inside a loaded segment below 3 GiB");
    k.mode = EntryMode::Pvh32;
    k.entry = GuestAddress{e};
  } else if (image.is_64bit) {
    FLICK_TRY_ASSIGN(uint64_t e, elf_physical_entry(image));
    k.mode = EntryMode::Long64;
    k.entry = GuestAddress{e};
  } else {
    return make_error(Errc::unsupported,
                      "ELF kernel: a 32-bit ELF needs a XEN_ELFNOTE_PHYS32_ENTRY note (PVH) "
                      "to be booted; it has none");
  }
  // Check every segment before writing any, so a failed load leaves memory untouched.
  for (const auto& s : image.segments) {
    if (s.paddr < layout::kHighMem || !mem.contains(GuestAddress{s.paddr}, s.mem_size))
      return make_error(Errc::no_memory,
                        "ELF kernel: segment " + hex(s.paddr) + ".." + hex(s.paddr + s.mem_size) +
                            " is not inside guest RAM above 1 MiB (RAM below the MMIO hole "
                            "ends at " + hex(mem.end_below(layout::kMmioHoleStart)) + ")");
  }
  for (const auto& s : image.segments) {
    FLICK_TRY(mem.write(GuestAddress{s.paddr}, file.subspan(s.file_offset, s.file_size)));
    FLICK_TRY(mem.fill(GuestAddress{s.paddr + s.file_size}, s.mem_size - s.file_size,
                       std::byte{0}));
  }
  k.kernel_start = GuestAddress{image.segments.front().paddr};
  const ElfSegment& last = image.segments.back();
  k.kernel_end = GuestAddress{last.paddr + last.mem_size};
  return k;
}

}  // namespace flick::vmm
