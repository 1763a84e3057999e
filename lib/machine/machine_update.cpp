// What changes a machine besides its lifecycle: update (config versions), metadata, cordon,
// leases, and Host::clone. Each is a store call; update also builds what a new config boots.
#include <flick/machine.h>

#include "machine/init_config.h"
#include "machine/machine_impl.h"

#include <nlohmann/json.hpp>

#include <pwd.h>
#include <unistd.h>

#include <algorithm>

namespace flick {

namespace {

using Clock = std::chrono::system_clock;

Clock::time_point from_ms(int64_t ms) { return Clock::time_point(std::chrono::milliseconds(ms)); }

Error not_changeable(const std::string& id, const std::string& state) {
  return make_error(Errc::busy, "machine " + id + " is " + state);
}

// Fly's keys are free-form; these stay safe as JSON keys, file names and shell words.
Result<void> check_metadata_key(const std::string& key) {
  bool ok = !key.empty() && key.size() <= 128 && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
  if (ok) return {};
  return make_error(Errc::invalid_argument,
                    "metadata key '" + key + "' is not valid: use 1 to 128 of a-z, A-Z, 0-9, _, . and -");
}

std::string current_user() {
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_name) return pw->pw_name;
  return "uid " + std::to_string(::getuid());
}

Lease to_lease(const store::LeaseRow& r) {
  return Lease{r.nonce, r.owner, r.description, Clock::time_point(std::chrono::seconds(r.expires_at_s)), r.version};
}

}  // namespace

std::string Machine::Impl::metadata_json(const store::MachineRow& row) const {
  nlohmann::json meta = nlohmann::json::object();
  try {
    auto config = nlohmann::json::parse(row.config);
    if (config.contains("metadata")) meta = config["metadata"];
  } catch (const nlohmann::json::exception&) {
  }
  return nlohmann::json{{"id", row.id},           {"name", row.name},
                        {"app", row.app},         {"region", row.region},
                        {"instance_id", row.instance_id}, {"version", row.version},
                        {"metadata", meta}}
      .dump();
}

uint64_t Machine::version() const {
  auto r = impl_->row();
  return r ? r->version : 0;
}

std::string Machine::instance_id() const {
  auto r = impl_->row();
  return r ? r->instance_id : std::string();
}

Result<std::vector<MachineVersion>> Machine::versions() const {
  FLICK_TRY_ASSIGN(auto rows, impl_->host->store.versions(impl_->id));
  std::vector<MachineVersion> out;
  for (const auto& r : rows) {
    auto c = MachineConfig::from_json(r.config);
    if (!c) return std::move(c).error().with_context("machine " + impl_->id + " version " + std::to_string(r.version));
    out.push_back({r.version, r.instance_id, from_ms(r.created_at_ms), std::move(c).value()});
  }
  return out;
}

Result<void> Machine::update(const MachineConfig& given, UpdateOptions options) {
  auto& d = *impl_;
  auto& store = d.host->store;
  FLICK_TRY(given.validate());
  FLICK_TRY_ASSIGN(auto r, d.row());
  if (r.state == "destroying" || r.state == "destroyed") return not_changeable(d.id, r.state);
  FLICK_TRY(store.check_lease(d.id, d.nonce()));
  if (options.current_version && options.current_version != r.version)
    return make_error(Errc::busy, "machine " + d.id + " is at config version " + std::to_string(r.version) +
                                      ", not " + std::to_string(options.current_version));
  FLICK_TRY_ASSIGN(auto now, d.refresh(r));

  // Everything the new config needs, before the machine is touched.
  MachineConfig config = given;
  std::vector<std::string> volumes;
  for (auto& m : config.mounts) {
    auto v = store.get_volume(d.app, m.volume);
    if (!v) return std::move(v).error().with_context("machine mount " + m.path);
    if (!v->attached_machine_id.empty() && v->attached_machine_id != d.id)
      return make_error(Errc::busy, "volume " + m.volume + " is in use by machine " + v->attached_machine_id);
    m.volume = v->id;
    volumes.push_back(v->id);
  }
  MachineBoot boot = now->boot;
  if (config.image != now->config.image || config.pull == PullPolicy::always ||
      config.guest.rootfs_size_mb != now->config.guest.rootfs_size_mb) {
    FLICK_TRY_ASSIGN(boot.image, d.host->rootfs(config));
  }
  if (config.guest.kernel != now->config.guest.kernel || config.guest.kernel_modules != now->config.guest.kernel_modules) {
    FLICK_TRY_ASSIGN(auto files, d.host->boot_files(config.guest));
    boot.kernel = files.kernel;
    boot.initramfs = files.base_initramfs;
  }
  FLICK_TRY_ASSIGN(boot.process, machine::resolve_process(config, boot.image.config));

  if (running_state(r.state)) FLICK_TRY(stop());
  FLICK_TRY_ASSIGN(auto updated, store.update_config(d.id, config.to_json(), r.version, d.nonce(), boot.to_json()));
  store::EventRow e;
  e.machine_id = d.id;
  e.type = "update";
  e.source = "user";
  e.request = nlohmann::json{{"detail", "version " + std::to_string(updated.version) + ", instance " +
                                            updated.instance_id}}.dump();
  (void)store.append_event(e);
  // Volumes follow the mounts: ones no longer named are released.
  FLICK_TRY(store.detach_volumes(d.id));
  for (const auto& v : volumes) FLICK_TRY(store.attach_volume(v, d.id));
  FLICK_TRY(d.refresh(updated));
  if (options.skip_launch) return {};
  if (auto s = start(); !s)
    return std::move(s).error().with_context("machine " + d.id + " is updated to version " +
                                             std::to_string(updated.version) + " but did not start");
  return {};
}

Result<std::map<std::string, std::string>> Machine::metadata() const {
  FLICK_TRY_ASSIGN(auto r, impl_->row());
  FLICK_TRY_ASSIGN(auto v, impl_->refresh(r));
  return v->config.metadata;
}

Result<void> Machine::set_metadata(const std::string& key, const std::string& value) {
  FLICK_TRY(check_metadata_key(key));
  FLICK_TRY_ASSIGN(auto r, impl_->host->store.set_metadata(impl_->id, key, value));
  FLICK_TRY(impl_->refresh(r));
  return {};
}

Result<void> Machine::delete_metadata(const std::string& key) {
  FLICK_TRY(check_metadata_key(key));
  FLICK_TRY_ASSIGN(auto r, impl_->host->store.set_metadata(impl_->id, key, std::nullopt));
  FLICK_TRY(impl_->refresh(r));
  return {};
}

Result<void> Machine::cordon() { return impl_->host->store.set_cordoned(impl_->id, true, impl_->nonce()); }
Result<void> Machine::uncordon() { return impl_->host->store.set_cordoned(impl_->id, false, impl_->nonce()); }

bool Machine::cordoned() const {
  auto r = impl_->row();
  return r && r->cordoned;
}

Result<Lease> Machine::acquire_lease(std::chrono::seconds ttl, const std::string& description,
                                     const std::string& owner) {
  auto& d = *impl_;
  FLICK_TRY_ASSIGN(auto row, d.host->store.acquire_lease(d.id, ttl.count(), owner.empty() ? current_user() : owner,
                                                         description, d.nonce()));
  set_lease_nonce(row.nonce);
  return to_lease(row);
}

Result<Lease> Machine::lease() const {
  FLICK_TRY_ASSIGN(auto row, impl_->host->store.get_lease(impl_->id));
  return to_lease(row);
}

Result<void> Machine::release_lease(const std::string& nonce) {
  auto& d = *impl_;
  FLICK_TRY(d.host->store.release_lease(d.id, nonce));
  std::lock_guard lk(d.mu);
  if (d.lease_nonce == nonce) d.lease_nonce.clear();
  return {};
}

void Machine::set_lease_nonce(std::string nonce) {
  std::lock_guard lk(impl_->mu);
  impl_->lease_nonce = std::move(nonce);
}

const std::string& Machine::lease_nonce() const {
  std::lock_guard lk(impl_->mu);
  return impl_->lease_nonce;
}

Result<void> Machine::check_lease() const { return impl_->host->store.check_lease(impl_->id, impl_->nonce()); }

Result<std::unique_ptr<Machine>> Host::clone(const Machine& source, CloneOptions options, MachineHandlers handlers) {
  FLICK_TRY_ASSIGN(auto row, impl_->store.get_machine("", source.id()));
  if (row.state == "destroying" || row.state == "destroyed") return not_changeable(row.id, row.state);
  MachineConfig config;
  if (options.config) {
    config = *options.config;
  } else {
    auto stored = MachineConfig::from_json(row.config);
    if (!stored) return std::move(stored).error().with_context("machine " + row.id + "'s stored config");
    config = std::move(stored).value();
    if (!config.mounts.empty())
      return make_error(Errc::invalid_argument,
                        "cloning machine " + row.id + ": it mounts volume " + config.mounts[0].volume + " at " +
                            config.mounts[0].path +
                            ", and volumes are not shared: give the clone a config whose mounts name other volumes");
  }
  FLICK_TRY_ASSIGN(auto made, create(config, std::move(handlers), options.name, row.app));
  if (options.skip_launch) return made;
  if (auto s = made->start(); !s) {
    (void)made->destroy(/*force=*/true);
    return std::move(s).error().with_context("starting the clone of machine " + row.id);
  }
  return made;
}

}  // namespace flick
