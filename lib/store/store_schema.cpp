// Opening the store: the connection's settings, the schema and its migrations, and the
// calls about the database as a whole.
#include "store/store_db.h"

#include <iterator>
#include <system_error>

namespace flick::store {

using namespace detail;
namespace fs = std::filesystem;

namespace {

// Migration N (1-based) takes the schema from version N-1 to N; each runs in its own
// transaction with the PRAGMA user_version bump. Add a migration; never edit a shipped one.
constexpr const char* kMigrations[] = {
    // 1: the whole schema. Times are Unix milliseconds except leases.expires_at (seconds, as
    // Fly's API). JSON columns hold text; '' stands for "none".
    R"sql(
CREATE TABLE apps (
  name TEXT PRIMARY KEY,
  org_slug TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE machines (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
  region TEXT NOT NULL,
  state TEXT NOT NULL,
  config TEXT NOT NULL CHECK (json_valid(config)),
  instance_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  boot TEXT NOT NULL DEFAULT '',
  last_exit TEXT NOT NULL DEFAULT '',
  cordoned INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  destroyed_at INTEGER
);
-- A name is free again once its machine is destroyed; the database itself enforces it.
CREATE UNIQUE INDEX machines_live_name ON machines(app, name) WHERE state != 'destroyed';
-- A live machine's /30 (boot.network.subnet) is its own.
CREATE UNIQUE INDEX machines_live_subnet
  ON machines(CASE WHEN json_valid(boot) THEN json_extract(boot, '$.network.subnet') END)
  WHERE state != 'destroyed' AND boot != '';
CREATE INDEX machines_app_name ON machines(app, name);
CREATE INDEX machines_created ON machines(created_at, id);
CREATE TABLE machine_versions (
  machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  instance_id TEXT NOT NULL,
  config TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (machine_id, version)
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  machine_id TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  source TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  request TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_machine ON events(machine_id, id);
CREATE TABLE leases (
  machine_id TEXT PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
  nonce TEXT NOT NULL,
  owner TEXT NOT NULL,
  description TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  version TEXT NOT NULL
);
CREATE TABLE volumes (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
  region TEXT NOT NULL,
  size_gb INTEGER NOT NULL,
  path TEXT NOT NULL,
  state TEXT NOT NULL,
  attached_machine_id TEXT REFERENCES machines(id) ON DELETE SET NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX volumes_app_name ON volumes(app, name);
CREATE INDEX volumes_attached ON volumes(attached_machine_id);
)sql",
};

Result<int> user_version(const Op& op) {
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "PRAGMA user_version"));
  FLICK_TRY(st.step());
  return static_cast<int>(st.i64(0));
}

Result<void> migrate(sqlite3* db, const fs::path& path) {
  const int latest = MachineStore::schema_version();
  Op op{db, "reading the schema version"};
  FLICK_TRY_ASSIGN(int have, user_version(op));
  if (have > latest)
    return make_error(Errc::unsupported, "store " + path.string() + " has schema version " +
                                             std::to_string(have) + ", newer than this flick's " +
                                             std::to_string(latest) + ": use a newer flick");
  for (int v = have + 1; v <= latest; ++v) {
    Op step{db, "migrating the store schema to version " + std::to_string(v)};
    FLICK_TRY_ASSIGN(Txn txn, Txn::begin(step));
    // Another process may have migrated since we looked: re-read under the write lock.
    FLICK_TRY_ASSIGN(int now, user_version(step));
    if (now >= v) continue;
    if (int rc = sqlite3_exec(db, kMigrations[v - 1], nullptr, nullptr, nullptr); rc != SQLITE_OK)
      return step.fail(rc);
    // PRAGMA takes no parameters; v is our own loop counter, not outside input.
    FLICK_TRY(exec(step, ("PRAGMA user_version = " + std::to_string(v)).c_str()));
    FLICK_TRY(txn.commit());
  }
  return {};
}

// The connection's settings. journal_mode is the first statement that reads the file, so a
// file that is not a database fails here (SQLITE_NOTADB).
Result<void> configure(sqlite3* db, const fs::path& path) {
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 10'000);
  Op op{db, "opening store"};
  FLICK_TRY_ASSIGN(Stmt wal, Stmt::prepare(op, "PRAGMA journal_mode = WAL"));
  FLICK_TRY(wal.step());
  // Every process opens the store at once: without WAL readers would block writers.
  if (std::string mode = wal.text(0); mode != "wal")
    return make_error(Errc::unsupported, "store " + path.string() + " cannot use a WAL journal (got " +
                                             mode + "); is it on a network filesystem?");
  FLICK_TRY(exec(op, "PRAGMA synchronous = NORMAL"));
  FLICK_TRY(exec(op, "PRAGMA foreign_keys = ON"));
  return {};
}

}  // namespace

int MachineStore::schema_version() { return static_cast<int>(std::size(kMigrations)); }

Result<MachineStore> MachineStore::open(const fs::path& path) {
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) return make_error(Errc::io, "creating the store's directory " + path.parent_path().string() +
                                            ": " + ec.message());
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  // From here `store` owns db (even a failed open leaves a handle to close).
  MachineStore store(path, db);
  if (!db) return make_error(Errc::no_memory, "opening store " + path.string() + ": out of memory");
  if (rc != SQLITE_OK)
    return make_error(Errc::io, "opening store " + path.string() + ": " + sqlite3_errmsg(db));
  FLICK_TRY(configure(db, path));
  FLICK_TRY(migrate(db, path));
  // The baseline for changed_since_last_check().
  FLICK_TRY(store.changed_since_last_check());
  return store;
}

MachineStore::MachineStore(MachineStore&& o) noexcept
    : path_(std::move(o.path_)), db_(std::exchange(o.db_, nullptr)), data_version_(o.data_version_),
      own_changes_(o.own_changes_) {}

MachineStore& MachineStore::operator=(MachineStore&& o) noexcept {
  if (this != &o) {
    sqlite3_close_v2(db_);
    path_ = std::move(o.path_);
    db_ = std::exchange(o.db_, nullptr);
    data_version_ = o.data_version_;
    own_changes_ = o.own_changes_;
  }
  return *this;
}

MachineStore::~MachineStore() { sqlite3_close_v2(db_); }

Result<bool> MachineStore::changed_since_last_check() {
  ConnLock lock(db_);
  Op op{db_, "checking the store for changes"};
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "PRAGMA data_version"));
  FLICK_TRY(st.step());
  // data_version moves on commits by other connections; our own show in total_changes.
  int64_t dv = st.i64(0);
  int64_t own = sqlite3_total_changes64(db_);
  bool changed = dv != data_version_ || own != own_changes_;
  data_version_ = dv;
  own_changes_ = own;
  return changed;
}

Result<std::string> MachineStore::integrity_check() {
  ConnLock lock(db_);
  Op op{db_, "checking the store's integrity"};
  FLICK_TRY_ASSIGN(Stmt st, Stmt::prepare(op, "PRAGMA integrity_check"));
  std::string out;
  for (;;) {
    FLICK_TRY_ASSIGN(bool row, st.step());
    if (!row) break;
    if (!out.empty()) out += '\n';
    out += st.text(0);
  }
  return out;
}

}  // namespace flick::store
