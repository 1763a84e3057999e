// Image references: the registry grammar of the distribution spec (docker/distribution
// reference package) and skopeo's local transport prefixes.
#include <flick/image.h>

#include "image/sha256.h"

namespace flick {

namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [._] | "__" | [-]+
bool valid_repository(std::string_view repo) {
  if (repo.empty() || repo.size() > 255) return false;
  size_t start = 0;
  while (true) {
    size_t slash = repo.find('/', start);
    std::string_view comp = repo.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (comp.empty() || !is_lower_alnum(comp.front()) || !is_lower_alnum(comp.back())) return false;
    for (char c : comp)
      if (!is_lower_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128 || tag.front() == '.' || tag.front() == '-') return false;
  for (char c : tag)
    if (!is_lower_alnum(c) && !(c >= 'A' && c <= 'Z') && c != '_' && c != '.' && c != '-')
      return false;
  return true;
}

Error bad(std::string_view text, std::string_view why) {
  return make_error(Errc::invalid_argument,
                    "parsing image reference '" + std::string(text) + "': " + std::string(why));
}

Result<ImageReference> parse_local(std::string_view text, ImageTransport t, std::string_view rest) {
  ImageReference r;
  r.transport = t;
  size_t colon = rest.find(':');
  r.path = std::string(rest.substr(0, colon));
  if (colon != std::string_view::npos) r.tag = std::string(rest.substr(colon + 1));
  if (r.path.empty()) return bad(text, "missing path");
  if (colon != std::string_view::npos && r.tag.empty()) return bad(text, "empty tag after ':'");
  return r;
}

}  // namespace

Result<ImageReference> ImageReference::parse(std::string_view text,
                                             std::string_view default_registry) {
  for (auto [prefix, t] : {std::pair{"oci:", ImageTransport::oci_layout},
                           std::pair{"oci-archive:", ImageTransport::oci_archive},
                           std::pair{"docker-archive:", ImageTransport::docker_archive}}) {
    std::string_view p = prefix;
    if (text.substr(0, p.size()) == p) return parse_local(text, t, text.substr(p.size()));
  }
  std::string_view rest = text;
  if (rest.substr(0, 9) == "docker://") rest.remove_prefix(9);
  if (rest.empty()) return bad(text, "empty reference");

  ImageReference r;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    if (!image::is_sha256_digest(r.digest))
      return bad(text, "digest must be sha256: followed by 64 lowercase hex digits");
    rest = rest.substr(0, at);
  }
  // A first component with '.' or ':' or named localhost is a registry host.
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    if (first.find_first_of(".:") != std::string_view::npos || first == "localhost") {
      r.registry = std::string(first);
      rest = rest.substr(slash + 1);
    }
  }
  if (r.registry.empty()) r.registry = std::string(default_registry);
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    r.tag = std::string(rest.substr(colon + 1));
    if (!valid_tag(r.tag)) return bad(text, "invalid tag '" + r.tag + "'");
    rest = rest.substr(0, colon);
  }
  r.repository = std::string(rest);
  if (!valid_repository(r.repository))
    return bad(text, "invalid repository name '" + r.repository +
                         "' (lowercase letters, digits, '.', '_', '-' and '/')");
  if ((r.registry == "docker.io" || r.registry == "index.docker.io") &&
      r.repository.find('/') == std::string::npos)
    r.repository = "library/" + r.repository;
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

std::string ImageReference::to_string() const {
  switch (transport) {
    case ImageTransport::oci_layout: return "oci:" + path + (tag.empty() ? "" : ":" + tag);
    case ImageTransport::oci_archive: return "oci-archive:" + path + (tag.empty() ? "" : ":" + tag);
    case ImageTransport::docker_archive: return "docker-archive:" + path + (tag.empty() ? "" : ":" + tag);
    case ImageTransport::registry: break;
  }
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

}  // namespace flick
