#include "vmm/acpi/aml.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace flick::vmm::acpi {
namespace {

// AML opcodes and prefixes (ACPI 6.5 section 20.3).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = 0x5c;
constexpr uint8_t kParentPrefixChar = 0x5e;
constexpr uint8_t kReturnOp = 0xa4;
constexpr uint8_t kNullName = 0x00;

// Resource descriptor tags (6.4.2, 6.4.3).
constexpr uint8_t kIoPortTag = 0x47;
constexpr uint8_t kEndTag = 0x79;
constexpr uint8_t kMemory32FixedTag = 0x86;
constexpr uint8_t kExtendedInterruptTag = 0x89;
constexpr uint8_t kQWordAddressTag = 0x8a;

constexpr size_t kMaxPkgLength = (size_t{1} << 28) - 1;

void put_le(std::vector<uint8_t>& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

bool is_lead_name_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_lead_name_char(c) || (c >= '0' && c <= '9'); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

// ---- Resource descriptors ----

Resource Resource::memory32_fixed(uint32_t base, uint32_t size, bool writable) {
  Resource r;
  r.bytes_ = {kMemory32FixedTag, 0x09, 0x00, static_cast<uint8_t>(writable ? 1 : 0)};
  put_le(r.bytes_, base, 4);
  put_le(r.bytes_, size, 4);
  if (size == 0 || uint64_t{base} + size > (uint64_t{1} << 32)) {
    r.error_ = "Memory32Fixed window at " + std::to_string(base) + " of " +
               std::to_string(size) + " bytes is empty or crosses 4 GiB";
  }
  return r;
}

Resource Resource::qword_memory(uint64_t base, uint64_t size, bool writable) {
  Resource r;
  uint64_t last = base + size - 1;
  if (size == 0 || last < base) {
    r.error_ = "QWordMemory window at " + std::to_string(base) + " of " + std::to_string(size) +
               " bytes is empty or wraps around";
    return r;
  }
  r.bytes_ = {kQWordAddressTag, 0x2b, 0x00,
              0x00,   // resource type: memory range
              0x0d,   // ResourceConsumer, positive decode, fixed minimum and maximum
              static_cast<uint8_t>(writable ? 1 : 0)};  // non-cacheable, AddressRangeMemory
  put_le(r.bytes_, 0, 8);  // granularity
  put_le(r.bytes_, base, 8);
  put_le(r.bytes_, last, 8);
  put_le(r.bytes_, 0, 8);  // translation offset
  put_le(r.bytes_, size, 8);
  return r;
}

Resource Resource::io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  Resource r;
  r.bytes_ = {kIoPortTag, 0x01};  // Decode16
  put_le(r.bytes_, min, 2);
  put_le(r.bytes_, max, 2);
  r.bytes_.push_back(alignment);
  r.bytes_.push_back(length);
  if (max < min) r.error_ = "IO range has maximum base below its minimum";
  return r;
}

Resource Resource::interrupt(uint32_t gsi, Trigger trigger, Polarity polarity, Sharing sharing) {
  Resource r;
  uint8_t flags = 0x01;  // ResourceConsumer
  if (trigger == Trigger::edge) flags |= 0x02;
  if (polarity == Polarity::active_low) flags |= 0x04;
  if (sharing == Sharing::shared) flags |= 0x08;
  r.bytes_ = {kExtendedInterruptTag, 0x06, 0x00, flags, 0x01};
  put_le(r.bytes_, gsi, 4);
  return r;
}

// ---- Terms ----

Aml Aml::failed(std::string error) {
  Aml a;
  a.error_ = std::move(error);
  return a;
}

void Aml::append(const Aml& part) {
  bytes_.insert(bytes_.end(), part.bytes_.begin(), part.bytes_.end());
  if (error_.empty()) error_ = part.error_;
}

std::vector<uint8_t> Aml::pkg_length(size_t body_size) {
  // The encoded length counts its own bytes: 1 byte holds up to 63, 2 bytes 12 bits,
  // 3 bytes 20 bits, 4 bytes 28 bits.
  if (body_size + 1 <= 0x3f) return {static_cast<uint8_t>(body_size + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    size_t total = body_size + 1 + extra;
    if (total >= (size_t{1} << (4 + 8 * extra))) continue;
    std::vector<uint8_t> out{static_cast<uint8_t>((extra << 6) | (total & 0x0f))};
    for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
    return out;
  }
  return {};
}

Result<std::vector<uint8_t>> Aml::name_string(std::string_view path) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument,
                      "encoding AML name \"" + std::string(path) + "\": " + why);
  };
  std::vector<uint8_t> out;
  size_t i = 0;
  if (i < path.size() && path[i] == '\\') {
    out.push_back(kRootChar);
    ++i;
  } else {
    while (i < path.size() && path[i] == '^') {
      out.push_back(kParentPrefixChar);
      ++i;
    }
  }
  std::vector<std::string> segs;
  std::string_view rest = path.substr(i);
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    std::string_view seg = rest.substr(0, dot);
    if (seg.empty() || seg.size() > 4) return bad("segments must be 1 to 4 characters");
    if (!is_lead_name_char(seg[0])) return bad("a segment must start with A-Z or '_'");
    if (!std::all_of(seg.begin(), seg.end(), is_name_char))
      return bad("segments may hold only A-Z, 0-9 and '_'");
    std::string padded(seg);
    padded.resize(4, '_');
    segs.push_back(padded);
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
    if (rest.empty()) return bad("a path must not end with '.'");
  }
  if (segs.empty() && out.empty()) return bad("the name is empty");
  if (segs.size() > 255) return bad("more than 255 segments");
  if (segs.empty()) {
    out.push_back(kNullName);
  } else if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (const auto& s : segs) out.insert(out.end(), s.begin(), s.end());
  return out;
}

Aml Aml::integer(uint64_t value) {
  Aml a;
  if (value == 0) {
    a.bytes_ = {kZeroOp};
  } else if (value == 1) {
    a.bytes_ = {kOneOp};
  } else if (value <= 0xff) {
    a.bytes_ = {kBytePrefix};
    put_le(a.bytes_, value, 1);
  } else if (value <= 0xffff) {
    a.bytes_ = {kWordPrefix};
    put_le(a.bytes_, value, 2);
  } else if (value <= 0xffffffff) {
    a.bytes_ = {kDWordPrefix};
    put_le(a.bytes_, value, 4);
  } else {
    a.bytes_ = {kQWordPrefix};
    put_le(a.bytes_, value, 8);
  }
  return a;
}

Aml Aml::string(std::string_view text) {
  if (text.size() > 200) return failed("AML string longer than 200 characters");
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0 || u > 0x7f)
      return failed("AML string \"" + std::string(text) + "\" holds a NUL or non-ASCII byte");
  }
  Aml a;
  // Sized up front: GCC 12 at -O2 misreports vector::insert here (-Warray-bounds).
  a.bytes_.resize(text.size() + 2);
  a.bytes_[0] = kStringPrefix;
  std::memcpy(a.bytes_.data() + 1, text.data(), text.size());
  a.bytes_.back() = 0;
  return a;
}

Aml Aml::eisa_id(std::string_view id) {
  bool valid = id.size() == 7 && std::all_of(id.begin(), id.begin() + 3, [](char c) {
                 return c >= 'A' && c <= 'Z';
               }) && std::all_of(id.begin() + 3, id.end(), [](char c) {
                 return hex_value(c) >= 0;
               });
  if (!valid) {
    return failed("EISAID \"" + std::string(id) +
                  "\" is not three letters A-Z followed by four hex digits");
  }
  // Three 5-bit letters and a 16-bit product number, stored most significant byte first.
  uint32_t v = uint32_t(id[0] - 0x40) << 26 | uint32_t(id[1] - 0x40) << 21 |
               uint32_t(id[2] - 0x40) << 16;
  for (int i = 3; i < 7; ++i) v |= uint32_t(hex_value(id[i])) << (4 * (6 - i));
  Aml a;
  a.bytes_ = {kDWordPrefix};
  put_le(a.bytes_, __builtin_bswap32(v), 4);
  return a;
}

Aml Aml::with_pkg_length(std::vector<uint8_t> opcode, const Aml& body, std::string_view what) {
  Aml a;
  a.error_ = body.error_;
  std::vector<uint8_t> len = pkg_length(body.bytes_.size());
  if (len.empty() && a.error_.empty())
    a.error_ = std::string(what) + " is larger than an AML package can be (2^28 bytes)";
  a.bytes_ = std::move(opcode);
  a.bytes_.insert(a.bytes_.end(), len.begin(), len.end());
  a.bytes_.insert(a.bytes_.end(), body.bytes_.begin(), body.bytes_.end());
  return a;
}

Aml Aml::package(const std::vector<Aml>& elements) {
  if (elements.size() > 255) return failed("AML package of more than 255 elements");
  Aml body;
  body.bytes_.push_back(static_cast<uint8_t>(elements.size()));
  for (const auto& e : elements) body.append(e);
  return with_pkg_length({kPackageOp}, body, "package");
}

Aml Aml::resource_template(const std::vector<Resource>& descriptors) {
  std::vector<uint8_t> data;
  for (const auto& d : descriptors) {
    if (!d.error_.empty()) return failed("resource template: " + d.error_);
    data.insert(data.end(), d.bytes_.begin(), d.bytes_.end());
  }
  // End Tag (6.4.2.9): its checksum byte makes all bytes of the template sum to zero.
  data.push_back(kEndTag);
  uint8_t sum = 0;
  for (uint8_t b : data) sum = static_cast<uint8_t>(sum + b);
  data.push_back(static_cast<uint8_t>(-sum));

  Aml body = integer(data.size());  // BufferSize
  body.bytes_.insert(body.bytes_.end(), data.begin(), data.end());
  return with_pkg_length({kBufferOp}, body, "resource template");
}

Aml Aml::name(std::string_view path, const Aml& value) {
  auto ns = name_string(path);
  if (!ns.ok()) return failed(ns.error().message);
  Aml a;
  a.bytes_.push_back(kNameOp);
  a.bytes_.insert(a.bytes_.end(), ns->begin(), ns->end());
  a.append(value);
  return a;
}

Aml Aml::scope(std::string_view path, const std::vector<Aml>& body) {
  auto ns = name_string(path);
  if (!ns.ok()) return failed(ns.error().message);
  Aml inner;
  inner.bytes_ = std::move(*ns);
  for (const auto& t : body) inner.append(t);
  return with_pkg_length({kScopeOp}, inner, "scope " + std::string(path));
}

Aml Aml::device(std::string_view path, const std::vector<Aml>& body) {
  auto ns = name_string(path);
  if (!ns.ok()) return failed(ns.error().message);
  Aml inner;
  inner.bytes_ = std::move(*ns);
  for (const auto& t : body) inner.append(t);
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, inner, "device " + std::string(path));
}

Aml Aml::method(std::string_view path, uint8_t args, bool serialized,
                const std::vector<Aml>& body) {
  if (args > 7) return failed("AML method " + std::string(path) + " with more than 7 arguments");
  auto ns = name_string(path);
  if (!ns.ok()) return failed(ns.error().message);
  Aml inner;
  inner.bytes_ = std::move(*ns);
  inner.bytes_.push_back(static_cast<uint8_t>(args | (serialized ? 0x08 : 0x00)));  // SyncLevel 0
  for (const auto& t : body) inner.append(t);
  return with_pkg_length({kMethodOp}, inner, "method " + std::string(path));
}

Aml Aml::return_value(const Aml& value) {
  Aml a;
  a.bytes_.push_back(kReturnOp);
  a.append(value);
  return a;
}

Aml Aml::sequence(const std::vector<Aml>& terms) {
  Aml a;
  for (const auto& t : terms) a.append(t);
  return a;
}

Result<std::vector<uint8_t>> Aml::encode() const {
  if (!error_.empty()) return make_error(Errc::invalid_argument, error_);
  return bytes_;
}

}  // namespace flick::vmm::acpi
