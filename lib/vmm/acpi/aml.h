// A small AML (ACPI Machine Language) encoder: enough to write a microVM's DSDT.
//
// Terms are values built by static functions and nested like the ASL they stand for:
//
//   Aml::device("VR00", {
//       Aml::name("_HID", Aml::string("LNRO0005")),
//       Aml::name("_UID", Aml::integer(0)),
//       Aml::name("_CRS", Aml::resource_template({
//           Resource::memory32_fixed(0xc0001000, 0x1000),
//           Resource::interrupt(5, Trigger::edge, Polarity::active_high)})),
//   })
//
// A builder given something it cannot encode (a bad name, a package of more than 255
// elements) does not throw: the term it returns carries the error, every term built from it
// carries it on, and encode() reports the first one. Encodings: ACPI 6.5 chapter 20 (AML
// grammar), section 6.4 (resource data types).
#pragma once

#include <flick/result.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace flick::vmm::acpi {

// One resource descriptor of a resource template (_CRS), ACPI 6.5 section 6.4.
class Resource {
 public:
  enum class Trigger : uint8_t { level = 0, edge = 1 };
  enum class Polarity : uint8_t { active_high = 0, active_low = 1 };
  enum class Sharing : uint8_t { exclusive = 0, shared = 1 };

  // Memory32Fixed (6.4.3.4): a fixed 32-bit memory window.
  static Resource memory32_fixed(uint32_t base, uint32_t size, bool writable = true);
  // QWordMemory (6.4.3.5.1): a 64-bit memory window consumed by the device, non-cacheable.
  static Resource qword_memory(uint64_t base, uint64_t size, bool writable = true);
  // IO (6.4.2.5): an I/O port range with 16-bit decode.
  static Resource io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
  // Extended Interrupt (6.4.3.6), ResourceConsumer, one interrupt number (a GSI on x86).
  static Resource interrupt(uint32_t gsi, Trigger trigger, Polarity polarity,
                            Sharing sharing = Sharing::exclusive);

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  const std::string& error() const { return error_; }

 private:
  friend class Aml;
  std::vector<uint8_t> bytes_;
  std::string error_;  // empty when valid
};

// An encoded AML term, or a sequence of terms.
class Aml {
 public:
  Aml() = default;  // the empty sequence

  // Integer in its shortest form: ZeroOp, OneOp, BytePrefix, WordPrefix, DWordPrefix or
  // QWordPrefix (20.2.3). QWord values need a DSDT of revision 2 or more.
  static Aml integer(uint64_t value);
  // String (20.2.3): ASCII without NUL, at most 200 characters (the ASL limit).
  static Aml string(std::string_view text);
  // EISAID("PNP0501"): the 32-bit compressed EISA id (19.6.35) as a DWord integer.
  static Aml eisa_id(std::string_view id);
  // Package (20.2.5.4) of at most 255 data objects.
  static Aml package(const std::vector<Aml>& elements);
  // Resource template: a Buffer of descriptors closed by an End Tag with its checksum.
  static Aml resource_template(const std::vector<Resource>& descriptors);

  // Name(path, value) (20.2.5.1). Paths: "_HID", "\\_SB_.VR00", "^PARN"; segments shorter
  // than four characters are padded with '_' as ASL does.
  static Aml name(std::string_view path, const Aml& value);
  // Scope(path) { body } (20.2.5.1).
  static Aml scope(std::string_view path, const std::vector<Aml>& body);
  // Device(name) { body } (20.2.5.2).
  static Aml device(std::string_view path, const std::vector<Aml>& body);
  // Method(name, args, Serialized?) { body } (20.2.5.2); args <= 7.
  static Aml method(std::string_view path, uint8_t args, bool serialized,
                    const std::vector<Aml>& body);
  // Return(value) (20.2.5.3).
  static Aml return_value(const Aml& value);
  // The terms one after another, e.g. the body of a DSDT.
  static Aml sequence(const std::vector<Aml>& terms);

  // The encoded bytes, or the first error met while building.
  Result<std::vector<uint8_t>> encode() const;
  bool ok() const { return error_.empty(); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

  // PkgLength (20.2.4) for a body of `body_size` bytes: the count includes the PkgLength
  // bytes themselves, so the 1-byte form covers bodies up to 62 bytes. Empty when the
  // result would exceed 2^28 - 1.
  static std::vector<uint8_t> pkg_length(size_t body_size);
  // NameString (20.2.2) for an ASL path, or an error naming what is wrong with it.
  static Result<std::vector<uint8_t>> name_string(std::string_view path);

 private:
  static Aml failed(std::string error);
  // Appends the bytes of `part`, and its error if this term has none yet.
  void append(const Aml& part);
  // opcode bytes + PkgLength + (prefix + body), the shape of every package-like term.
  static Aml with_pkg_length(std::vector<uint8_t> opcode, const Aml& body, std::string_view what);

  std::vector<uint8_t> bytes_;
  std::string error_;  // empty when valid
};

}  // namespace flick::vmm::acpi
