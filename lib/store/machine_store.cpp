// MachineStore: ids, apps, machines (state changes, config versions) and their events.
#include "store/store_db.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace flick::store {

using namespace detail;

namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// Appends the low `chars` 5-bit groups of v, most significant first.
void base32(std::string& out, uint64_t v, int chars, bool lower) {
  for (int i = chars - 1; i >= 0; --i) {
    char c = kCrockford[(v >> (5 * i)) & 31];
    out += lower && c >= 'A' ? static_cast<char>(c - 'A' + 'a') : c;
  }
}

// 80 random bits as 16 base32 characters (two 40-bit halves, 8 characters each).
void random_base32(std::string& out, bool lower) {
  unsigned char r[10];
  random_bytes(r, sizeof r);
  for (int half = 0; half < 2; ++half) {
    uint64_t v = 0;
    for (int i = 0; i < 5; ++i) v = v << 8 | r[half * 5 + i];
    base32(out, v, 8, lower);
  }
}

bool valid_app_name(std::string_view n) {
  return !n.empty() && n.size() <= 63 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Error bad_app_name(std::string_view name) {
  return make_error(Errc::invalid_argument,
                    "app name \"" + std::string(name) + "\" is not valid: use 1-63 of a-z, 0-9 and -");
}

Error app_not_found(std::string_view app) {
  return make_error(Errc::not_found, "app " + std::string(app) + " not found");
}

Error state_busy(const MachineRow& m) {
  return make_error(Errc::busy, "machine " + m.id + " is " + m.state);
}

Error name_taken(std::string_view name, std::string_view app) {
  return make_error(Errc::exists, "machine name " + std::string(name) + " is taken in app " + std::string(app));
}

Error config_not_json(std::string_view id) {
  return make_error(Errc::invalid_argument, "the config of machine " + std::string(id) + " is not valid JSON");
}

bool is_constraint(const Stmt& st, int extended) { return st.failed_code() == extended; }

Result<bool> app_exists(const Op& op, std::string_view app) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "SELECT 1 FROM apps WHERE name = ?"));
  st.bind(app);
  return st.step();
}

constexpr const char* kAppSelect =
    "SELECT name, org_slug, created_at,"
    " (SELECT count(*) FROM machines m WHERE m.app = a.name AND m.state != 'destroyed'),"
    " (SELECT count(*) FROM volumes v WHERE v.app = a.name AND v.state != 'destroyed')"
    " FROM apps a";

AppRow read_app(const Stmt& st) {
  return AppRow{st.text(0), st.text(1), st.i64(2), st.u64(3), st.u64(4)};
}

EventRow read_event(const Stmt& st) {
  return EventRow{st.i64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.i64(5), st.text(6)};
}

// Appends `e` to an existing machine's events (inside the caller's transaction).
Result<EventRow> insert_event(const Op& op, EventRow e, std::string_view machine_id,
                              std::string_view status) {
  e.machine_id = std::string(machine_id);
  if (e.timestamp_ms == 0) e.timestamp_ms = now_ms();
  if (e.status.empty()) e.status = std::string(status);
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "INSERT INTO events (machine_id, type, status, source, "
                                              "timestamp, request) VALUES (?, ?, ?, ?, ?, ?)"));
  st.bind(e.machine_id).bind(e.type).bind(e.status).bind(e.source).bind(e.timestamp_ms).bind(e.request);
  FLICK_TRY(st.run());
  e.id = sqlite3_last_insert_rowid(op.db);
  return e;
}

// The machine, which must not be destroyed, when no one else holds its lease (if `guarded`).
Result<MachineRow> load_for_change(const Op& op, std::string_view id,
                                   const std::optional<std::string>& lease_nonce, bool guarded = true) {
  FLICK_TRY_ASSIGN(MachineRow m, load_machine(op, id));
  if (m.state == "destroyed") return state_busy(m);
  if (guarded) FLICK_TRY(check_lease(op, id, lease_nonce));
  return m;
}

}  // namespace

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string new_ulid() {
  std::string id;
  id.reserve(26);
  base32(id, static_cast<uint64_t>(now_ms()), 10, false);  // 48 bits in 10 characters
  random_base32(id, false);
  return id;
}

std::string new_volume_id() {
  std::string id = "vol_";
  random_base32(id, true);
  return id;
}

// --- Apps ---

Result<void> MachineStore::create_app(const AppRow& app) {
  ConnLock lock(db_);
  Op op{db_, "creating app " + app.name};
  if (!valid_app_name(app.name))
    return bad_app_name(app.name);
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "INSERT INTO apps (name, org_slug, created_at) VALUES (?, ?, ?)"));
  st.bind(app.name).bind(app.org_slug.empty() ? "personal" : app.org_slug)
      .bind(app.created_at_ms ? app.created_at_ms : now_ms());
  if (auto r = st.run(); !r) {
    if (is_constraint(st, SQLITE_CONSTRAINT_PRIMARYKEY))
      return make_error(Errc::exists, "app name " + app.name + " has already been taken");
    return r;
  }
  return txn.commit();
}

Result<void> MachineStore::ensure_app(std::string_view name) {
  ConnLock lock(db_);
  Op op{db_, "creating app " + std::string(name)};
  if (!valid_app_name(name))
    return bad_app_name(name);
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "INSERT OR IGNORE INTO apps (name, org_slug, created_at) "
                                              "VALUES (?, 'personal', ?)"));
  st.bind(name).bind(now_ms());
  FLICK_TRY(st.run());
  return txn.commit();
}

Result<AppRow> MachineStore::get_app(std::string_view name) {
  ConnLock lock(db_);
  Op op{db_, "reading app " + std::string(name)};
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, std::string(kAppSelect) + " WHERE name = ?"));
  st.bind(name);
  FLICK_TRY_ASSIGN(bool found, st.step());
  if (!found) return app_not_found(name);
  return read_app(st);
}

Result<std::vector<AppRow>> MachineStore::list_apps() {
  ConnLock lock(db_);
  Op op{db_, "listing apps"};
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, std::string(kAppSelect) + " ORDER BY name"));
  std::vector<AppRow> apps;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) return apps;
    apps.push_back(read_app(st));
  }
}

Result<void> MachineStore::delete_app(std::string_view name, bool force) {
  ConnLock lock(db_);
  Op op{db_, "deleting app " + std::string(name)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(Stmt get, Stmt::prepare(op, std::string(kAppSelect) + " WHERE name = ?"));
  get.bind(name);
  FLICK_TRY_ASSIGN(bool found, get.step());
  if (!found) return app_not_found(name);
  AppRow app = read_app(get);
  if (!force && (app.machine_count || app.volume_count))
    return make_error(Errc::busy, "app " + app.name + " still has " + std::to_string(app.machine_count) +
                                      " machines and " + std::to_string(app.volume_count) +
                                      " volumes that are not destroyed (destroy them, or force)");
  // ON DELETE CASCADE takes the app's machines, their versions, events and leases, and volumes.
  FLICK_TRY_ASSIGN(Stmt del, Stmt::prepare(op, "DELETE FROM apps WHERE name = ?"));
  del.bind(name);
  FLICK_TRY(del.run());
  return txn.commit();
}

// --- Machines ---

Result<void> MachineStore::insert_machine(const MachineRow& machine, const EventRow& launch) {
  ConnLock lock(db_);
  Op op{db_, "creating machine " + machine.id};
  if (machine.id.empty() || machine.name.empty() || machine.app.empty())
    return make_error(Errc::invalid_argument, "creating machine \"" + machine.id + "\" (name \"" + machine.name +
                                                  "\", app \"" + machine.app + "\"): id, name and app are required");
  MachineRow m = machine;
  if (m.state.empty()) m.state = "created";
  if (m.instance_id.empty()) m.instance_id = new_ulid();
  if (m.created_at_ms == 0) m.created_at_ms = now_ms();
  if (m.updated_at_ms == 0) m.updated_at_ms = m.created_at_ms;

  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(bool app_found, app_exists(op, m.app));
  if (!app_found) return app_not_found(m.app);
  if (auto existing = load_machine(op, m.id); existing)
    return make_error(Errc::exists, "machine " + m.id + " already exists");
  else if (existing.error().code != Errc::not_found)
    return std::move(existing).error();

  FLICK_TRY_ASSIGN(Stmt ins, Stmt::prepare(op, std::string("INSERT INTO machines (") + kMachineCols +
                                                   ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  ins.bind(m.id).bind(m.name).bind(m.app).bind(m.region).bind(m.state).bind(m.config).bind(m.instance_id)
      .bind(m.version).bind(m.boot).bind(m.last_exit).bind(m.cordoned).bind(m.created_at_ms).bind(m.updated_at_ms);
  if (auto r = ins.run(); !r) {
    if (is_constraint(ins, SQLITE_CONSTRAINT_UNIQUE) && r.error().message.find("machines_live_subnet") != std::string::npos)
      return make_error(Errc::busy, "creating machine " + m.id + ": its network subnet is taken by another machine");
    if (is_constraint(ins, SQLITE_CONSTRAINT_UNIQUE)) return name_taken(m.name, m.app);
    if (is_constraint(ins, SQLITE_CONSTRAINT_CHECK)) return config_not_json(m.id);
    return r;
  }
  FLICK_TRY_ASSIGN(Stmt ver, Stmt::prepare(op, "INSERT INTO machine_versions (machine_id, version, "
                                               "instance_id, config, created_at) VALUES (?, ?, ?, ?, ?)"));
  ver.bind(m.id).bind(m.version).bind(m.instance_id).bind(m.config).bind(m.created_at_ms);
  FLICK_TRY(ver.run());
  FLICK_TRY(insert_event(op, launch, m.id, m.state));
  return txn.commit();
}

Result<MachineRow> MachineStore::get_machine(std::string_view app, std::string_view id_or_name) {
  ConnLock lock(db_);
  std::string key(id_or_name);
  Op op{db_, "looking up machine " + key};
  std::string in_app = app.empty() ? "" : " AND app = ?";
  FLICK_TRY_ASSIGN(Stmt by_id, Stmt::prepare(op, std::string("SELECT ") + kMachineCols +
                                                     " FROM machines WHERE id = ?" + in_app));
  by_id.bind(key);
  if (!app.empty()) by_id.bind(app);
  FLICK_TRY_ASSIGN(bool found, by_id.step());
  if (found) return read_machine(by_id);

  FLICK_TRY_ASSIGN(Stmt by_name, Stmt::prepare(op, std::string("SELECT ") + kMachineCols +
                                                       " FROM machines WHERE name = ? AND state != 'destroyed'" +
                                                       in_app + " ORDER BY app"));
  by_name.bind(key);
  if (!app.empty()) by_name.bind(app);
  std::vector<MachineRow> hits;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, by_name.step());
    if (!row) break;
    hits.push_back(read_machine(by_name));
  }
  if (hits.size() == 1) return hits[0];
  if (hits.empty())
    return make_error(Errc::not_found, "machine " + key + " not found" +
                                           (app.empty() ? "" : " in app " + std::string(app)));
  // Only possible without an app: the unique index keeps names apart within one.
  std::string apps;
  for (const auto& m : hits) apps += (apps.empty() ? "" : ", ") + m.app;
  return make_error(Errc::invalid_argument, "machine name " + key + " is ambiguous: apps " + apps +
                                                " each have one; name the app or use the id");
}

Result<std::vector<MachineRow>> MachineStore::list_machines(const MachineFilter& f) {
  ConnLock lock(db_);
  Op op{db_, "listing machines"};
  std::string sql = std::string("SELECT ") + kMachineCols + " FROM machines WHERE 1";
  if (!f.app.empty()) sql += " AND app = ?";
  if (!f.states.empty()) {
    sql += " AND state IN (?";
    for (size_t i = 1; i < f.states.size(); ++i) sql += ", ?";
    sql += ")";
  } else if (!f.include_destroyed) {
    sql += " AND state != 'destroyed'";
  }
  if (!f.region.empty()) sql += " AND region = ?";
  // json_each rather than json_extract with a path: a path cannot name a key holding '"'.
  for (size_t i = 0; i < f.metadata.size(); ++i)
    sql += " AND EXISTS (SELECT 1 FROM json_each(machines.config, '$.metadata') WHERE key = ? AND value = ?)";
  sql += " ORDER BY created_at, id";

  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, sql));
  if (!f.app.empty()) st.bind(f.app);
  for (const auto& s : f.states) st.bind(s);
  if (!f.region.empty()) st.bind(f.region);
  for (const auto& [k, v] : f.metadata) st.bind(k).bind(v);
  std::vector<MachineRow> out;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) return out;
    out.push_back(read_machine(st));
  }
}

Result<MachineRow> MachineStore::transition(const Transition& t) {
  ConnLock lock(db_);
  Op op{db_, "moving machine " + t.machine_id + " to " + t.to};
  if (t.to.empty())
    return make_error(Errc::invalid_argument, "moving machine " + t.machine_id + ": no state to move to");
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(MachineRow m, load_machine(op, t.machine_id));
  bool may_leave = t.from.empty() ? m.state != "destroyed"
                                  : std::find(t.from.begin(), t.from.end(), m.state) != t.from.end();
  if (!may_leave) return state_busy(m);
  if (!t.by_run) FLICK_TRY(detail::check_lease(op, m.id, t.lease_nonce));

  int64_t now = now_ms();
  bool destroying = t.to == "destroyed";
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE machines SET state = ?, updated_at = ?, "
                                              "last_exit = coalesce(?, last_exit), boot = coalesce(?, boot), "
                                              "destroyed_at = coalesce(?, destroyed_at) WHERE id = ?"));
  up.bind(t.to).bind(now).bind_optional(t.last_exit).bind_optional(t.boot);
  if (destroying) up.bind(now); else up.bind_null();
  up.bind(m.id);
  if (auto r = up.run(); !r) {
    // Only a machine brought back from "destroyed" can collide with a live name.
    if (is_constraint(up, SQLITE_CONSTRAINT_UNIQUE)) return name_taken(m.name, m.app);
    return std::move(r).error();
  }
  if (t.event) FLICK_TRY(insert_event(op, *t.event, m.id, t.to));
  if (destroying) {
    FLICK_TRY_ASSIGN(Stmt lease, Stmt::prepare(op, "DELETE FROM leases WHERE machine_id = ?"));
    FLICK_TRY(lease.bind(m.id).run());
    FLICK_TRY_ASSIGN(Stmt vols, Stmt::prepare(op, "UPDATE volumes SET attached_machine_id = NULL "
                                                  "WHERE attached_machine_id = ?"));
    FLICK_TRY(vols.bind(m.id).run());
  }
  FLICK_TRY_ASSIGN(MachineRow updated, load_machine(op, m.id));
  FLICK_TRY(txn.commit());
  return updated;
}

Result<MachineRow> MachineStore::update_config(std::string_view machine_id, std::string config_json,
                                               uint64_t expect_version,
                                               const std::optional<std::string>& lease_nonce,
                                               const std::optional<std::string>& boot) {
  ConnLock lock(db_);
  Op op{db_, "updating the config of machine " + std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(MachineRow m, load_for_change(op, machine_id, lease_nonce));
  if (expect_version && expect_version != m.version)
    return make_error(Errc::busy, "machine " + m.id + " is at config version " + std::to_string(m.version) +
                                      ", not " + std::to_string(expect_version));
  uint64_t version = m.version + 1;
  std::string instance_id = new_ulid();
  int64_t now = now_ms();
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE machines SET config = ?, version = ?, instance_id = ?, "
                                              "updated_at = ?, boot = coalesce(?, boot) WHERE id = ?"));
  up.bind(config_json).bind(version).bind(instance_id).bind(now).bind_optional(boot).bind(m.id);
  if (auto r = up.run(); !r) {
    if (is_constraint(up, SQLITE_CONSTRAINT_CHECK)) return config_not_json(m.id);
    return std::move(r).error();
  }
  FLICK_TRY_ASSIGN(Stmt ver, Stmt::prepare(op, "INSERT INTO machine_versions (machine_id, version, "
                                               "instance_id, config, created_at) VALUES (?, ?, ?, ?, ?)"));
  FLICK_TRY(ver.bind(m.id).bind(version).bind(instance_id).bind(config_json).bind(now).run());
  FLICK_TRY_ASSIGN(MachineRow updated, load_machine(op, m.id));
  FLICK_TRY(txn.commit());
  return updated;
}

Result<void> MachineStore::set_cordoned(std::string_view machine_id, bool cordoned,
                                        const std::optional<std::string>& lease_nonce) {
  ConnLock lock(db_);
  Op op{db_, std::string(cordoned ? "cordoning" : "uncordoning") + " machine " + std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY(load_for_change(op, machine_id, lease_nonce));
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE machines SET cordoned = ?, updated_at = ? WHERE id = ?"));
  FLICK_TRY(up.bind(cordoned).bind(now_ms()).bind(machine_id).run());
  return txn.commit();
}

Result<MachineRow> MachineStore::set_metadata(std::string_view machine_id, std::string_view key,
                                              const std::optional<std::string>& value) {
  ConnLock lock(db_);
  Op op{db_, (value ? "setting" : "deleting") + std::string(" metadata key ") + std::string(key) + " of machine " +
                 std::string(machine_id)};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(MachineRow m, load_for_change(op, machine_id, std::nullopt, /*guarded=*/false));
  nlohmann::ordered_json config;
  try {
    config = nlohmann::ordered_json::parse(m.config);
    if (value) {
      config["metadata"][std::string(key)] = *value;
    } else if (config.contains("metadata")) {
      config["metadata"].erase(std::string(key));
      if (config["metadata"].empty()) config.erase("metadata");
    }
  } catch (const nlohmann::json::exception&) {
    return config_not_json(m.id);
  }
  std::string text = config.dump();
  int64_t now = now_ms();
  FLICK_TRY_ASSIGN(Stmt up, Stmt::prepare(op, "UPDATE machines SET config = ?, updated_at = ? WHERE id = ?"));
  FLICK_TRY(up.bind(text).bind(now).bind(m.id).run());
  // The current version's config says what the machine has now (its instance_id is unchanged).
  FLICK_TRY_ASSIGN(Stmt ver, Stmt::prepare(op, "UPDATE machine_versions SET config = ? WHERE machine_id = ? AND version = ?"));
  FLICK_TRY(ver.bind(text).bind(m.id).bind(m.version).run());
  FLICK_TRY_ASSIGN(MachineRow updated, load_machine(op, m.id));
  FLICK_TRY(txn.commit());
  return updated;
}

Result<void> MachineStore::check_lease(std::string_view machine_id, const std::optional<std::string>& lease_nonce) {
  ConnLock lock(db_);
  Op op{db_, "checking the lease of machine " + std::string(machine_id)};
  FLICK_TRY(load_machine(op, machine_id));
  return detail::check_lease(op, machine_id, lease_nonce);
}

Result<std::vector<VersionRow>> MachineStore::versions(std::string_view machine_id) {
  ConnLock lock(db_);
  Op op{db_, "listing the config versions of machine " + std::string(machine_id)};
  FLICK_TRY(load_machine(op, machine_id));
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "SELECT version, instance_id, config, created_at FROM "
                                              "machine_versions WHERE machine_id = ? ORDER BY version DESC"));
  st.bind(machine_id);
  std::vector<VersionRow> out;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) return out;
    out.push_back(VersionRow{st.u64(0), st.text(1), st.text(2), st.i64(3)});
  }
}

// --- Events ---

Result<EventRow> MachineStore::append_event(EventRow event) {
  ConnLock lock(db_);
  std::string id = event.machine_id;
  Op op{db_, "recording a " + event.type + " event of machine " + id};
  FLICK_TRY_ASSIGN(Txn txn, Txn::begin(op));
  FLICK_TRY_ASSIGN(MachineRow m, load_machine(op, id));
  FLICK_TRY_ASSIGN(EventRow e, insert_event(op, std::move(event), id, m.state));
  FLICK_TRY(txn.commit());
  return e;
}

Result<std::vector<EventRow>> MachineStore::events(std::string_view machine_id, size_t limit, int64_t after_id) {
  ConnLock lock(db_);
  Op op{db_, "listing the events of machine " + std::string(machine_id)};
  FLICK_TRY(load_machine(op, machine_id));
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "SELECT id, machine_id, type, status, source, timestamp, request "
                                              "FROM events WHERE machine_id = ? AND id > ? ORDER BY id DESC LIMIT ?"));
  // LIMIT -1: no limit.
  st.bind(machine_id).bind(after_id).bind(limit ? static_cast<int64_t>(limit) : int64_t{-1});
  std::vector<EventRow> out;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) return out;
    out.push_back(read_event(st));
  }
}

}  // namespace flick::store
