// MachineConfig to and from the JSON of Fly's Machines API (see <flick/machine.h>).
#include "store/machine_config_json.h"

#include "store/names.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>

namespace flick {

namespace {

// ordered_json keeps the key order of raw fields (services, unimplemented ones) as given.
using Json = nlohmann::ordered_json;

// Fly's fields flick keeps in MachineConfig::unimplemented, by the object they are in.
constexpr std::string_view kKeptTop[] = {
    "cache_drive", "checks", "containers", "disable_machine_autostart", "dns", "files", "metrics",
    "processes", "rootfs", "schedule", "size", "spot", "standbys", "statics", "volumes"};
constexpr std::string_view kKeptGuest[] = {"gpu_kind", "gpus", "host_dedication_id", "max_memory_mb",
                                           "persist_rootfs"};
constexpr std::string_view kKeptInit[] = {"swap_size_mb"};
constexpr std::string_view kKeptRestart[] = {"gpu_bid_price"};
constexpr std::string_view kKeptMount[] = {"add_size_gb", "encrypted", "extend_threshold_percent",
                                           "name", "size_gb", "size_gb_limit"};

// Raw JSON deeper than this is refused, so that dumping it cannot exhaust the stack.
constexpr int kMaxRawDepth = 64;

template <size_t N>
bool listed(const std::string_view (&list)[N], std::string_view key) {
  for (auto k : list)
    if (k == key) return true;
  return false;
}

// For a key of MachineConfig::unimplemented: its field name within `prefix` ("guest." for
// "guest.gpus"), or empty if it is not in that object or not a field flick keeps there.
std::string_view kept_in(std::string_view key, std::string_view prefix) {
  if (key.substr(0, prefix.size()) != prefix) return {};
  std::string_view rest = key.substr(prefix.size());
  if (prefix.empty()) return listed(kKeptTop, rest) ? rest : std::string_view{};
  if (prefix == "guest.") return listed(kKeptGuest, rest) ? rest : std::string_view{};
  if (prefix == "init.") return listed(kKeptInit, rest) ? rest : std::string_view{};
  if (prefix == "restart.") return listed(kKeptRestart, rest) ? rest : std::string_view{};
  return listed(kKeptMount, rest) ? rest : std::string_view{};  // "mounts[i]."
}

std::string mount_prefix(size_t i) { return "mounts[" + std::to_string(i) + "]."; }

// Whether `key` names a field flick keeps, given the config's number of mounts.
bool is_kept(std::string_view key, size_t mounts) {
  for (std::string_view p : {"", "guest.", "init.", "restart."})
    if (!kept_in(key, p).empty()) return true;
  constexpr std::string_view m = "mounts[";
  if (key.substr(0, m.size()) != m) return false;
  size_t i = m.size(), index = 0;
  for (; i < key.size() && key[i] >= '0' && key[i] <= '9'; ++i) {
    index = index * 10 + static_cast<size_t>(key[i] - '0');
    if (index >= mounts) return false;
  }
  // mount_prefix() spells the index one way only ("mounts[0].", not "mounts[00].").
  return i > m.size() && !kept_in(key, mount_prefix(index)).empty();
}

bool deeper_than(const Json& v, int depth) {
  if (depth < 0) return true;
  if (v.is_array() || v.is_object())
    for (const auto& e : v)
      if (deeper_than(e, depth - 1)) return true;
  return false;
}

Error invalid(const std::string& path, const std::string& why) {
  return make_error(Errc::invalid_argument, "machine config: " + (path.empty() ? "" : path + ": ") + why);
}

// A value as it appears in an error message: its JSON, cut short.
std::string shown(const Json& v) {
  if (deeper_than(v, 8)) return v.is_array() ? "[...]" : "{...}";  // not dumped whole: see kMaxRawDepth
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 64) {
    size_t cut = 60;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
    s = s.substr(0, cut) + "...";
  }
  return s;
}

Error expected(const std::string& path, const std::string& what, const Json& got) {
  return invalid(path, "expected " + what + ", got " + shown(got));
}

// The value readers: each fails naming the field and the type it wanted.
Result<void> read(const Json& v, const std::string& path, std::string& out) {
  if (!v.is_string()) return expected(path, "a string", v);
  out = v.get<std::string>();
  return {};
}

Result<void> read(const Json& v, const std::string& path, bool& out) {
  if (!v.is_boolean()) return expected(path, "a boolean", v);
  out = v.get<bool>();
  return {};
}

Result<void> read(const Json& v, const std::string& path, uint32_t& out) {
  if (!v.is_number()) return expected(path, "a number", v);
  if (v.is_number_float()) return expected(path, "a whole number", v);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<uint32_t>::max())
    return expected(path, "a number in 0..4294967295", v);
  out = static_cast<uint32_t>(v.get<uint64_t>());
  return {};
}

Result<void> read(const Json& v, const std::string& path, std::vector<std::string>& out) {
  if (!v.is_array()) return expected(path, "an array of strings", v);
  out.clear();
  for (size_t i = 0; i < v.size(); ++i)
    FLICK_TRY(read(v[i], path + "[" + std::to_string(i) + "]", out.emplace_back()));
  return {};
}

Result<void> read(const Json& v, const std::string& path, std::map<std::string, std::string>& out) {
  if (!v.is_object()) return expected(path, "an object of strings", v);
  out.clear();
  for (const auto& [key, value] : v.items()) FLICK_TRY(read(value, path + "." + key, out[key]));
  return {};
}

// A Go duration ("5s", "1m30s") or integer nanoseconds (as fly-go reads them), in whole
// milliseconds.
Result<void> read_duration(const Json& v, const std::string& path, std::chrono::milliseconds& out) {
  std::chrono::nanoseconds ns{0};
  if (v.is_string()) {
    auto d = store::parse_duration(v.get_ref<const std::string&>());
    if (!d) return invalid(path, d.error().message);
    ns = *d;
  } else if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return invalid(path, shown(v) + " is too long");
    ns = std::chrono::nanoseconds{v.get<int64_t>()};
  } else if (v.is_number_integer()) {
    return invalid(path, shown(v) + " is negative");
  } else {
    return expected(path, "a duration (a string like \"5s\" or integer nanoseconds)", v);
  }
  if (ns.count() % 1000'000 != 0) return invalid(path, shown(v) + " is not a whole number of milliseconds");
  out = std::chrono::duration_cast<std::chrono::milliseconds>(ns);
  return {};
}

// A signal name as Fly writes it ("SIGTERM"), without "SIG", or a number (JSON or text).
Result<void> read_signal(const Json& v, const std::string& path, int& out) {
  std::optional<int> signo;
  if (v.is_string()) {
    signo = store::signal_from_string(v.get_ref<const std::string&>());
  } else if (v.is_number_integer()) {
    signo = store::signal_from_string(v.dump());  // a negative number is not a signal either
  } else {
    return expected(path, "a signal name or number", v);
  }
  if (!signo) return invalid(path, "unknown signal " + shown(v));
  out = *signo;
  return {};
}

Result<void> read_port(const Json& v, const std::string& path, uint16_t& out) {
  uint32_t n = 0;
  FLICK_TRY(read(v, path, n));
  if (n < 1 || n > 65535) return invalid(path, std::to_string(n) + " is not in 1..65535");
  out = static_cast<uint16_t>(n);
  return {};
}

Result<void> read_ports(const Json& j, const std::string& path, std::vector<uint16_t>& out) {
  if (!j.is_array()) return expected(path, "an array", j);
  for (size_t n = 0; n < j.size(); ++n) {
    const std::string at = path + "[" + std::to_string(n) + "]";
    if (!j[n].is_object()) return expected(at, "an object", j[n]);
    const auto port = j[n].find("port");
    if (port == j[n].end() || port->is_null()) {
      if (j[n].contains("start_port") || j[n].contains("end_port"))
        return invalid(at, "port ranges (start_port, end_port) are not supported: give each port");
      return invalid(at + ".port", "missing");
    }
    FLICK_TRY(read_port(*port, at + ".port", out.emplace_back()));
  }
  return {};
}

Result<void> read_concurrency(const Json& j, const std::string& path, ServiceConfig& out) {
  if (!j.is_object()) return expected(path, "an object", j);
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    if (key == "type") {
      std::string type;
      FLICK_TRY(read(v, path + ".type", type));
      if (type == "requests") return invalid(path + ".type", "\"requests\" is not supported: flick's proxy counts connections");
      if (type != "connections") return expected(path + ".type", "\"connections\"", v);
    } else if (key == "soft_limit") {
      FLICK_TRY(read(v, path + ".soft_limit", out.soft_limit));
    } else if (key == "hard_limit") {
      FLICK_TRY(read(v, path + ".hard_limit", out.hard_limit));
    }
  }
  if (out.soft_limit && out.hard_limit && out.soft_limit > out.hard_limit)
    return invalid(path + ".soft_limit", std::to_string(out.soft_limit) + " is above hard_limit " +
                                             std::to_string(out.hard_limit));
  return {};
}

// One of services[]: the fields flick's proxy uses; the others are left to services_json.
Result<ServiceConfig> read_service(const Json& j, const std::string& at) {
  if (!j.is_object()) return expected(at, "an object", j);
  ServiceConfig s;
  bool internal_port = false;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;
    const std::string path = at + "." + key;
    if (key == "protocol") {
      FLICK_TRY(read(v, path, s.protocol));
      if (s.protocol == "udp") return invalid(path, "\"udp\" is not supported: flick's proxy speaks tcp only");
      if (s.protocol != "tcp") return expected(path, "\"tcp\"", v);
    } else if (key == "internal_port") {
      FLICK_TRY(read_port(v, path, s.internal_port));
      internal_port = true;
    } else if (key == "ports") {
      FLICK_TRY(read_ports(v, path, s.ports));
    } else if (key == "autostart") {
      FLICK_TRY(read(v, path, s.autostart));
    } else if (key == "autostop") {
      if (v.is_boolean()) s.autostop = v.get<bool>() ? Autostop::stop : Autostop::off;
      else if (v == "off") s.autostop = Autostop::off;
      else if (v == "stop") s.autostop = Autostop::stop;
      else if (v == "suspend") s.autostop = Autostop::suspend;
      else return expected(path, "\"off\", \"stop\", \"suspend\" or a boolean", v);
    } else if (key == "min_machines_running") {
      FLICK_TRY(read(v, path, s.min_machines_running));
    } else if (key == "concurrency") {
      FLICK_TRY(read_concurrency(v, path, s));
    } else if (key == "autostop_idle") {
      FLICK_TRY(read_duration(v, path, s.autostop_idle));
      if (s.autostop_idle.count() == 0) return invalid(path, "must be longer than 0s");
    }
  }
  if (!internal_port) return invalid(at + ".internal_port", "missing");
  return s;
}

class Reader {
 public:
  Reader(MachineConfig& c, std::vector<std::string>* warnings) : c_(c), warnings_(warnings) {}

  Result<void> top(const Json& j) {
    if (!j.is_object()) return expected("", "an object", j);
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;  // as Go reads it: the same as absent
      if (key == "image") FLICK_TRY(read(v, key, c_.image));
      else if (key == "guest") FLICK_TRY(guest(v));
      else if (key == "env") FLICK_TRY(read(v, key, c_.env));
      else if (key == "init") FLICK_TRY(init(v));
      else if (key == "mounts") FLICK_TRY(mounts(v));
      else if (key == "services") FLICK_TRY(services(v));
      else if (key == "restart") FLICK_TRY(restart(v));
      else if (key == "auto_destroy") FLICK_TRY(read(v, key, c_.auto_destroy));
      else if (key == "stop_config") FLICK_TRY(stop_config(v));
      else if (key == "metadata") FLICK_TRY(read(v, key, c_.metadata));
      else if (key == "start_timeout") FLICK_TRY(read_duration(v, key, c_.start_timeout));
      else if (key == "pull") FLICK_TRY(pull(v));
      else FLICK_TRY(keep_or_refuse("", key, v));
    }
    return {};
  }

 private:
  Result<void> pull(const Json& j) {
    if (!j.is_string()) return expected("pull", "\"always\", \"missing\" or \"never\"", j);
    const auto& text = j.get_ref<const std::string&>();
    if (text == "always") c_.pull = PullPolicy::always;
    else if (text == "missing") c_.pull = PullPolicy::missing;
    else if (text == "never") c_.pull = PullPolicy::never;
    else return expected("pull", "\"always\", \"missing\" or \"never\"", j);
    return {};
  }

  Result<void> guest(const Json& j) {
    if (!j.is_object()) return expected("guest", "an object", j);
    auto& g = c_.guest;
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;
      const std::string path = "guest." + key;
      if (key == "cpu_kind") {
        FLICK_TRY(read(v, path, g.cpu_kind));
        if (g.cpu_kind != "shared" && g.cpu_kind != "performance")
          return expected(path, "\"shared\" or \"performance\"", v);
      } else if (key == "cpus") FLICK_TRY(read(v, path, g.cpus));
      else if (key == "memory_mb") FLICK_TRY(read(v, path, g.memory_mb));
      else if (key == "kernel_args") FLICK_TRY(read(v, path, g.kernel_args));
      else if (key == "kernel") FLICK_TRY(read(v, path, g.kernel));
      else if (key == "kernel_modules") FLICK_TRY(read(v, path, g.kernel_modules));
      else if (key == "rootfs_size_mb") FLICK_TRY(read(v, path, g.rootfs_size_mb));
      else FLICK_TRY(keep_or_refuse("guest.", key, v));
    }
    return {};
  }

  Result<void> init(const Json& j) {
    if (!j.is_object()) return expected("init", "an object", j);
    auto& i = c_.init;
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;
      const std::string path = "init." + key;
      if (key == "exec") FLICK_TRY(read(v, path, i.exec));
      else if (key == "entrypoint") FLICK_TRY(read(v, path, i.entrypoint));
      else if (key == "cmd") FLICK_TRY(read(v, path, i.cmd));
      else if (key == "tty") FLICK_TRY(read(v, path, i.tty));
      else if (key == "kernel_args") FLICK_TRY(read(v, path, i.kernel_args));
      else if (key == "user") FLICK_TRY(read(v, path, i.user));
      else if (key == "workdir") FLICK_TRY(read(v, path, i.workdir));
      else FLICK_TRY(keep_or_refuse("init.", key, v));
    }
    return {};
  }

  Result<void> mounts(const Json& j) {
    if (!j.is_array()) return expected("mounts", "an array", j);
    for (size_t n = 0; n < j.size(); ++n) {
      const std::string prefix = mount_prefix(n);
      const std::string at = prefix.substr(0, prefix.size() - 1);  // "mounts[0]"
      if (!j[n].is_object()) return expected(at, "an object", j[n]);
      auto& m = c_.mounts.emplace_back();
      for (const auto& [key, v] : j[n].items()) {
        if (v.is_null()) continue;
        if (key == "volume") FLICK_TRY(read(v, prefix + key, m.volume));
        else if (key == "path") FLICK_TRY(read(v, prefix + key, m.path));
        else FLICK_TRY(keep_or_refuse(prefix, key, v));
      }
    }
    return {};
  }

  Result<void> services(const Json& j) {
    if (!j.is_array()) return expected("services", "an array", j);
    if (deeper_than(j, kMaxRawDepth)) return invalid("services", "nested too deep");
    c_.services_json = j.dump();
    return {};
  }

  Result<void> restart(const Json& j) {
    if (!j.is_object()) return expected("restart", "an object", j);
    auto& r = c_.restart;
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;
      const std::string path = "restart." + key;
      if (key == "policy") {
        std::string name;
        FLICK_TRY(read(v, path, name));
        // Fly reads an empty policy as its default, on-failure. An absent policy (or restart)
        // keeps flick's default instead, RestartPolicy::no.
        if (name.empty()) {
          r.policy = RestartPolicy::on_failure;
        } else if (auto p = store::restart_policy_from_string(name)) {
          r.policy = *p;
        } else if (name == "spot-price") {
          return invalid(path, "\"spot-price\" is not supported: use \"no\", \"always\" or \"on-failure\"");
        } else {
          return expected(path, "\"no\", \"always\" or \"on-failure\"", v);
        }
      } else if (key == "max_retries") {
        FLICK_TRY(read(v, path, r.max_retries));
      } else {
        FLICK_TRY(keep_or_refuse("restart.", key, v));
      }
    }
    return {};
  }

  Result<void> stop_config(const Json& j) {
    if (!j.is_object()) return expected("stop_config", "an object", j);
    for (const auto& [key, v] : j.items()) {
      if (v.is_null()) continue;
      const std::string path = "stop_config." + key;
      if (key == "signal") FLICK_TRY(read_signal(v, path, c_.stop_config.signal));
      else if (key == "timeout") FLICK_TRY(read_duration(v, path, c_.stop_config.timeout));
      else return invalid(path, "unknown field");
    }
    return {};
  }

  // A field of the object at `prefix` that flick does not read: kept if it is one of Fly's
  // listed above, else refused.
  Result<void> keep_or_refuse(const std::string& prefix, const std::string& key, const Json& v) {
    const std::string path = prefix + key;
    if (kept_in(path, prefix).empty()) return invalid(path, "unknown field");
    if (deeper_than(v, kMaxRawDepth)) return invalid(path, "nested too deep");
    c_.unimplemented[path] = v.dump();
    if (warnings_) warnings_->push_back(path + ": accepted and kept, but flick does not implement it yet");
    return {};
  }

  MachineConfig& c_;
  std::vector<std::string>* warnings_;
};

// Adds the kept fields of the object at `prefix` to `obj`, in the map's order.
void put_kept(const std::map<std::string, std::string>& kept, const std::string& prefix, Json& obj) {
  for (auto it = kept.lower_bound(prefix); it != kept.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    auto field = kept_in(it->first, prefix);
    if (field.empty()) continue;
    auto v = Json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (!v.is_discarded()) obj[std::string(field)] = std::move(v);
  }
}

}  // namespace

Result<MachineConfig> MachineConfig::from_json(std::string_view json, std::vector<std::string>* warnings) {
  Json j;
  try {
    j = Json::parse(json);
  } catch (const Json::parse_error& e) {
    std::string what = e.what();  // "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    if (auto end = what.find("] "); what.front() == '[' && end != std::string::npos) what.erase(0, end + 2);
    return make_error(Errc::malformed, "machine config: " + what);
  }
  MachineConfig c;
  FLICK_TRY(Reader(c, warnings).top(j));
  return c;
}

std::string MachineConfig::to_json() const {
  Json j = Json::object();
  j["image"] = image;

  Json g = Json::object();
  g["cpu_kind"] = guest.cpu_kind;
  g["cpus"] = guest.cpus;
  g["memory_mb"] = guest.memory_mb;
  if (!guest.kernel_args.empty()) g["kernel_args"] = guest.kernel_args;
  if (!guest.kernel.empty()) g["kernel"] = guest.kernel;
  if (!guest.kernel_modules.empty()) g["kernel_modules"] = guest.kernel_modules;
  if (guest.rootfs_size_mb) g["rootfs_size_mb"] = guest.rootfs_size_mb;
  put_kept(unimplemented, "guest.", g);
  j["guest"] = std::move(g);

  if (!env.empty()) j["env"] = env;

  Json i = Json::object();
  if (!init.exec.empty()) i["exec"] = init.exec;
  if (!init.entrypoint.empty()) i["entrypoint"] = init.entrypoint;
  if (!init.cmd.empty()) i["cmd"] = init.cmd;
  if (init.tty) i["tty"] = true;
  if (!init.kernel_args.empty()) i["kernel_args"] = init.kernel_args;
  if (!init.user.empty()) i["user"] = init.user;
  if (!init.workdir.empty()) i["workdir"] = init.workdir;
  put_kept(unimplemented, "init.", i);
  if (!i.empty()) j["init"] = std::move(i);

  if (!mounts.empty()) {
    Json ms = Json::array();
    for (size_t n = 0; n < mounts.size(); ++n) {
      Json m = Json::object();
      m["volume"] = mounts[n].volume;
      m["path"] = mounts[n].path;
      put_kept(unimplemented, mount_prefix(n), m);
      ms.push_back(std::move(m));
    }
    j["mounts"] = std::move(ms);
  }

  if (!services_json.empty()) {
    auto s = Json::parse(services_json, nullptr, /*allow_exceptions=*/false);
    if (!s.is_discarded()) j["services"] = std::move(s);
  }

  Json r = Json::object();
  r["policy"] = to_string(restart.policy);
  r["max_retries"] = restart.max_retries;
  put_kept(unimplemented, "restart.", r);
  j["restart"] = std::move(r);

  j["auto_destroy"] = auto_destroy;

  Json stop = Json::object();
  if (const char* name = store::signal_name(stop_config.signal)) stop["signal"] = name;
  else stop["signal"] = stop_config.signal;
  stop["timeout"] = store::format_duration(stop_config.timeout);
  j["stop_config"] = std::move(stop);

  if (!metadata.empty()) j["metadata"] = metadata;
  if (start_timeout != MachineConfig{}.start_timeout) j["start_timeout"] = store::format_duration(start_timeout);
  if (pull == PullPolicy::always) j["pull"] = "always";
  else if (pull == PullPolicy::never) j["pull"] = "never";

  put_kept(unimplemented, "", j);
  // Strings from C++ callers may hold bytes that are not UTF-8: they are replaced, not thrown.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<std::vector<ServiceConfig>> MachineConfig::services() const {
  std::vector<ServiceConfig> out;
  if (services_json.empty()) return out;
  auto j = Json::parse(services_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) return invalid("services", "is not a JSON array");
  std::map<uint16_t, std::string> published;  // port -> where
  for (size_t n = 0; n < j.size(); ++n) {
    const std::string at = "services[" + std::to_string(n) + "]";
    FLICK_TRY_ASSIGN(auto s, read_service(j[n], at));
    for (size_t p = 0; p < s.ports.size(); ++p) {
      const std::string where = at + ".ports[" + std::to_string(p) + "].port";
      auto [it, fresh] = published.emplace(s.ports[p], where);
      if (!fresh) return invalid(where, std::to_string(s.ports[p]) + " is published by " + it->second + " too");
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<void> store::check_json_fields(const MachineConfig& config) {
  FLICK_TRY(config.services());
  for (const auto& [key, value] : config.unimplemented) {
    if (!is_kept(key, config.mounts.size())) return invalid(key, "is not a Fly field that flick keeps");
    if (Json::parse(value, nullptr, /*allow_exceptions=*/false).is_discarded()) return invalid(key, "is not JSON");
  }
  return {};
}

}  // namespace flick
