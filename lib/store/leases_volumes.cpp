// MachineStore: machine leases and volumes.
#include "store/store_db.h"

#include <algorithm>
#include <set>

namespace flick::store {

using namespace detail;

namespace {

std::string new_nonce() {
  unsigned char r[16];
  random_bytes(r, sizeof r);
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char b : r) s += {hex[b >> 4], hex[b & 15]};
  return s;
}

// The live lease's columns: nonce, owner, description, expires_at, version.
Result<std::optional<LeaseRow>> live_lease(const Op& op, std::string_view machine_id) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "SELECT nonce, owner, description, expires_at, version "
                                              "FROM leases WHERE machine_id = ? AND expires_at > ?"));
  st.bind(machine_id).bind(now_s());
  FLICK_TRY_ASSIGN(bool found, st.step());
  if (!found) return std::optional<LeaseRow>();
  return std::optional<LeaseRow>(
      LeaseRow{std::string(machine_id), st.text(0), st.text(1), st.text(2), st.i64(3), st.text(4)});
}

bool valid_volume_name(std::string_view n) {
  return !n.empty() && n.size() <= 30 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

constexpr const char* kVolumeCols =
    "id, name, app, region, size_gb, path, state, attached_machine_id, created_at";

VolumeRow read_volume(const Stmt& st) {
  return VolumeRow{st.text(0), st.text(1), st.text(2), st.text(3), st.u64(4),
                   st.text(5), st.text(6), st.text(7), st.i64(8)};
}

Error volume_not_found(std::string_view id) {
  return make_error(Errc::not_found, "volume " + std::string(id) + " not found");
}

Error volume_attached(const VolumeRow& v) {
  return make_error(Errc::busy, "volume " + v.id + " is attached to machine " + v.attached_machine_id);
}

Result<VolumeRow> load_volume(const Op& op, std::string_view id) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, std::string("SELECT ") + kVolumeCols + " FROM volumes WHERE id = ?"));
  st.bind(id);
  FLICK_TRY_ASSIGN(bool found, st.step());
  if (!found) return volume_not_found(id);
  return read_volume(st);
}

// A volume that is not destroyed, for a change to it.
Result<VolumeRow> load_live_volume(const Op& op, std::string_view id) {
  FLICK_TRY_ASSIGN(VolumeRow v, load_volume(op, id));
  if (v.state == "destroyed") return make_error(Errc::busy, "volume " + v.id + " is destroyed");
  return v;
}

}  // namespace

// --- Leases ---

Result<LeaseRow> MachineStore::acquire_lease(std::string_view machine_id, int64_t ttl_s, std::string_view owner,
                                             std::string_view description, const std::optional<std::string>& nonce) {
  ConnLock lock(db_);
  Op op{db_, "acquiring the lease of machine " + std::string(machine_id)};
  if (ttl_s <= 0)
    return make_error(Errc::invalid_argument, op.what + ": the ttl must be positive, not " + std::to_string(ttl_s));
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(MachineRow m, load_machine(op, machine_id));
  if (m.state == "destroyed") return make_error(Errc::busy, "machine " + m.id + " is destroyed");
  FLICK_TRY_ASSIGN(std::optional<LeaseRow> live, live_lease(op, machine_id));
  int64_t expires = now_s() + ttl_s;
  LeaseRow lease;
  if (live) {
    FLICK_TRY(detail::check_lease(op, machine_id, nonce));  // Errc::lease_held unless the holder refreshes
    lease = std::move(*live);
    lease.expires_at_s = expires;
    lease.version = new_ulid();
    FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE leases SET expires_at = ?, version = ? WHERE machine_id = ?"));
    FLICK_TRY(up.bind(lease.expires_at_s).bind(lease.version).bind(machine_id).run());
  } else {
    // None, or an expired one (as good as none): replace it.
    lease = LeaseRow{std::string(machine_id), new_nonce(), std::string(owner), std::string(description),
                     expires, new_ulid()};
    FLICK_TRY_ASSIGN(Stmt ins, Stmt::prepare(op, "INSERT OR REPLACE INTO leases (machine_id, nonce, owner, "
                                                 "description, expires_at, version) VALUES (?, ?, ?, ?, ?, ?)"));
    FLICK_TRY(ins.bind(lease.machine_id).bind(lease.nonce).bind(lease.owner).bind(lease.description)
                  .bind(lease.expires_at_s).bind(lease.version).run());
  }
  FLICK_TRY(txn.commit());
  return lease;
}

Result<LeaseRow> MachineStore::get_lease(std::string_view machine_id) {
  ConnLock lock(db_);
  Op op{db_, "reading the lease of machine " + std::string(machine_id)};
  FLICK_TRY(load_machine(op, machine_id));
  FLICK_TRY_ASSIGN(std::optional<LeaseRow> live, live_lease(op, machine_id));
  if (!live)
    return make_error(Errc::not_found, "lease not found: machine " + std::string(machine_id) + " has no live lease");
  return std::move(*live);
}

Result<void> MachineStore::release_lease(std::string_view machine_id, std::string_view nonce) {
  ConnLock lock(db_);
  Op op{db_, "releasing the lease of machine " + std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY(load_machine(op, machine_id));
  FLICK_TRY_ASSIGN(Stmt del, Stmt::prepare(op, "DELETE FROM leases WHERE machine_id = ? AND nonce = ?"));
  FLICK_TRY(del.bind(machine_id).bind(nonce).run());
  if (sqlite3_changes(db_) == 0)
    return make_error(Errc::not_found, "lease not found: machine " + std::string(machine_id) +
                                           " holds no lease with that nonce");
  return txn.commit();
}

// --- Volumes ---

Result<void> MachineStore::insert_volume(const VolumeRow& volume) {
  ConnLock lock(db_);
  Op op{db_, "creating volume " + volume.id};
  if (volume.id.empty())
    return make_error(Errc::invalid_argument, "creating volume " + volume.name + ": it has no id");
  if (!valid_volume_name(volume.name))
    return make_error(Errc::invalid_argument,
                      "volume name \"" + volume.name + "\" is not valid: use 1-30 of a-z, 0-9 and _");
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(Stmt app, Stmt::prepare(op, "SELECT 1 FROM apps WHERE name = ?"));
  FLICK_TRY_ASSIGN(bool app_found, app.bind(volume.app).step());
  if (!app_found) return make_error(Errc::not_found, "app " + volume.app + " not found");
  FLICK_TRY_ASSIGN(Stmt ins, Stmt::prepare(op, std::string("INSERT INTO volumes (") + kVolumeCols +
                                                   ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  ins.bind(volume.id).bind(volume.name).bind(volume.app).bind(volume.region).bind(volume.size_gb)
      .bind(volume.path).bind(volume.state.empty() ? "created" : volume.state);
  if (volume.attached_machine_id.empty()) ins.bind_null(); else ins.bind(volume.attached_machine_id);
  ins.bind(volume.created_at_ms ? volume.created_at_ms : now_ms());
  if (auto r = ins.run(); !r) {
    if (ins.failed_code() == SQLITE_CONSTRAINT_PRIMARYKEY)
      return make_error(Errc::exists, "volume " + volume.id + " already exists");
    if (ins.failed_code() == SQLITE_CONSTRAINT_FOREIGNKEY)
      return make_error(Errc::not_found, "creating volume " + volume.id + ": machine " +
                                             volume.attached_machine_id + " not found");
    return r;
  }
  return txn.commit();
}

Result<VolumeRow> MachineStore::get_volume(std::string_view app, std::string_view id_or_name) {
  ConnLock lock(db_);
  std::string key(id_or_name);
  Op op{db_, "looking up volume " + key};
  std::string in_app = app.empty() ? "" : " AND app = ?";
  FLICK_TRY_ASSIGN(Stmt by_id, Stmt::prepare(op, std::string("SELECT ") + kVolumeCols +
                                                     " FROM volumes WHERE id = ?" + in_app));
  by_id.bind(key);
  if (!app.empty()) by_id.bind(app);
  FLICK_TRY_ASSIGN(bool found, by_id.step());
  if (found) return read_volume(by_id);

  FLICK_TRY_ASSIGN(Stmt by_name, Stmt::prepare(op, std::string("SELECT ") + kVolumeCols +
                                                       " FROM volumes WHERE name = ? AND state != 'destroyed'" +
                                                       in_app + " ORDER BY app, created_at, id"));
  by_name.bind(key);
  if (!app.empty()) by_name.bind(app);
  std::vector<VolumeRow> hits;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, by_name.step());
    if (!row) break;
    hits.push_back(read_volume(by_name));
  }
  if (hits.size() == 1) return hits[0];
  if (hits.empty())
    return make_error(Errc::not_found, "volume " + key + " not found" +
                                           (app.empty() ? "" : " in app " + std::string(app)));
  // Volume names are not unique (as Fly's): only the id tells such volumes apart.
  std::set<std::string> apps;
  for (const auto& v : hits) apps.insert(v.app);
  if (apps.size() == 1)
    return make_error(Errc::invalid_argument, "volume name " + key + " is not unique in app " + *apps.begin() +
                                                  ": use its id");
  std::string names;
  for (const auto& a : apps) names += (names.empty() ? "" : ", ") + a;
  return make_error(Errc::invalid_argument, "volume name " + key + " is used in apps " + names +
                                                ": name the app or use its id");
}

Result<std::vector<VolumeRow>> MachineStore::list_volumes(std::string_view app, bool include_destroyed) {
  ConnLock lock(db_);
  Op op{db_, "listing volumes"};
  std::string sql = std::string("SELECT ") + kVolumeCols + " FROM volumes WHERE 1";
  if (!app.empty()) sql += " AND app = ?";
  if (!include_destroyed) sql += " AND state != 'destroyed'";
  sql += " ORDER BY created_at, id";
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, sql));
  if (!app.empty()) st.bind(app);
  std::vector<VolumeRow> out;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) return out;
    out.push_back(read_volume(st));
  }
}

Result<void> MachineStore::attach_volume(std::string_view volume_id, std::string_view machine_id) {
  ConnLock lock(db_);
  Op op{db_, "attaching volume " + std::string(volume_id) + " to machine " + std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(VolumeRow v, load_live_volume(op, volume_id));
  FLICK_TRY_ASSIGN(MachineRow m, load_machine(op, machine_id));
  if (m.state == "destroyed") return make_error(Errc::busy, "machine " + m.id + " is destroyed");
  if (m.app != v.app)
    return make_error(Errc::invalid_argument, op.what + ": the volume belongs to app " + v.app +
                                                  ", the machine to app " + m.app);
  if (v.attached_machine_id == m.id) return {};
  if (!v.attached_machine_id.empty()) return volume_attached(v);
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE volumes SET attached_machine_id = ? WHERE id = ?"));
  FLICK_TRY(up.bind(m.id).bind(v.id).run());
  return txn.commit();
}

Result<void> MachineStore::detach_volumes(std::string_view machine_id) {
  ConnLock lock(db_);
  Op op{db_, "detaching the volumes of machine " + std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY(load_machine(op, machine_id));
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE volumes SET attached_machine_id = NULL "
                                              "WHERE attached_machine_id = ?"));
  FLICK_TRY(up.bind(machine_id).run());
  return txn.commit();
}

Result<void> MachineStore::set_volume_size(std::string_view volume_id, uint64_t size_gb) {
  ConnLock lock(db_);
  Op op{db_, "resizing volume " + std::string(volume_id) + " to " + std::to_string(size_gb) + " GB"};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(VolumeRow v, load_live_volume(op, volume_id));
  if (size_gb < v.size_gb)
    return make_error(Errc::invalid_argument, op.what + ": it is " + std::to_string(v.size_gb) +
                                                  " GB and a volume can only grow");
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE volumes SET size_gb = ? WHERE id = ?"));
  FLICK_TRY(up.bind(size_gb).bind(v.id).run());
  return txn.commit();
}

Result<void> MachineStore::mark_volume_destroyed(std::string_view volume_id) {
  ConnLock lock(db_);
  Op op{db_, "destroying volume " + std::string(volume_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(VolumeRow v, load_volume(op, volume_id));
  if (v.state == "destroyed") return {};
  if (!v.attached_machine_id.empty()) return volume_attached(v);
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE volumes SET state = 'destroyed' WHERE id = ?"));
  FLICK_TRY(up.bind(v.id).run());
  return txn.commit();
}

}  // namespace flick::store
