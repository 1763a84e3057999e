// MachineStore: apps, machines, their events and config versions, volumes and leases, in one
// SQLite database (WAL) that every flick process on the host opens at once.
//
// Each mutating call is one transaction (BEGIN IMMEDIATE), so a process killed at any point
// leaves the store as it was before or after that call. State changes are compare-and-set:
// transition() names the states it may leave, and fails with Errc::busy naming the state
// the machine is really in when another process got there first. Rows hold configs and exit
// details as JSON text (Fly's schema); this layer stores them, lib/machine gives them types.
#pragma once

#include <flick/result.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct sqlite3;

namespace flick::store {

int64_t now_ms();  // wall clock, Unix milliseconds

// A 26-character ULID (Crockford base32; time-ordered), Fly's instance_id and lease version.
std::string new_ulid();
// A volume id: "vol_" and 16 random lowercase Crockford base32 characters.
std::string new_volume_id();

// Row structs that callers fill with designated initializers give every member a default,
// so -Wextra (missing-field-initializers) stays quiet about the ones left out.
struct AppRow {
  std::string name{};      // [a-z0-9-]{1,63}, unique
  std::string org_slug{};  // "personal" unless given
  int64_t created_at_ms = 0;
  uint64_t machine_count = 0;  // not destroyed (filled by get_app / list_apps)
  uint64_t volume_count = 0;
};

struct MachineRow {
  std::string id;           // 14 hex digits
  std::string name;         // unique among the app's machines that are not destroyed
  std::string app;
  std::string region;
  std::string state;        // to_string(MachineState)
  std::string config;       // MachineConfig, Fly-schema JSON
  std::string instance_id;  // a ULID per config version
  uint64_t version = 1;     // config version: 1 at create, +1 per update_config()
  std::string boot;         // JSON: what a start boots (kernel, initramfs, rootfs, network)
  std::string last_exit;    // JSON ExitStatus of the last run, or empty
  bool cordoned = false;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

struct EventRow {
  int64_t id = 0;           // increasing across the store; 0 before insertion
  std::string machine_id;
  std::string type;         // to_string(MachineEventType)
  std::string status;       // the state the event left the machine in
  std::string source;       // "user" (a caller's request) or "flick" (the machine's run)
  int64_t timestamp_ms = 0;
  std::string request;      // JSON (exit_event, restart_count, detail), or empty
};

struct VersionRow {
  uint64_t version = 0;
  std::string instance_id;
  std::string config;
  int64_t created_at_ms = 0;
};

struct LeaseRow {
  std::string machine_id;
  std::string nonce;        // 32 hex digits; the holder sends it with every mutating call
  std::string owner;
  std::string description;
  int64_t expires_at_s = 0;  // Unix seconds
  std::string version;      // a ULID, new per acquire/refresh
};

struct VolumeRow {
  std::string id{};      // "vol_" + 16 base32 characters
  std::string name{};    // [a-z0-9_]{1,30}; not unique within an app (as Fly)
  std::string app{};
  std::string region{};
  uint64_t size_gb = 1;
  std::string path{};    // the ext4 image on the host
  std::string state{};   // "created", "destroyed"
  std::string attached_machine_id{};  // empty when free
  int64_t created_at_ms = 0;
};

struct MachineFilter {
  std::string app{};                  // empty: every app
  std::vector<std::string> states{};  // empty: any (destroyed only with include_destroyed);
                                      // states named here match, "destroyed" too
  std::string region{};
  // config.metadata[k] == v, for all of them (any key: dots and quotes are data)
  std::vector<std::pair<std::string, std::string>> metadata{};
  bool include_destroyed = false;
};

// One compare-and-set state change, with the event that records it.
struct Transition {
  std::string machine_id{};
  std::vector<std::string> from{};  // the states it may leave; empty: any but destroyed
  std::string to{};
  std::optional<std::string> lease_nonce{};  // checked when the machine's lease is held
  // A change the machine's own run (or flick settling an ended one) makes: a lease binds
  // callers, not the run a holder started, so it is not checked.
  bool by_run = false;
  // Appended: machine_id set; a zero timestamp and an empty status (`to`) filled in.
  std::optional<EventRow> event{};
  std::optional<std::string> last_exit{};  // replaces MachineRow::last_exit
  std::optional<std::string> boot{};       // replaces MachineRow::boot
};

class MachineStore {
 public:
  // Opens (creating) the database at `path`, in WAL mode, and migrates its schema to the
  // newest version. A database from a newer flick is refused (Errc::unsupported).
  static Result<MachineStore> open(const std::filesystem::path& path);
  MachineStore(MachineStore&&) noexcept;
  MachineStore& operator=(MachineStore&&) noexcept;
  ~MachineStore();

  const std::filesystem::path& path() const { return path_; }
  static int schema_version();  // what this build writes

  // Apps. create_app fails with Errc::exists (Errc::invalid_argument for a bad name); an
  // empty org_slug is "personal", a zero created_at_ms now. delete_app fails with Errc::busy
  // while the app has machines or volumes that are not destroyed, unless `force`; it deletes
  // the app's rows with it (machines, versions, events, leases, volumes; destroyed ones too),
  // so a new app of that name starts empty. Volume files on the host are the caller's.
  Result<void> create_app(const AppRow& app);
  Result<void> ensure_app(std::string_view name);  // creates it if missing
  Result<AppRow> get_app(std::string_view name);   // Errc::not_found
  Result<std::vector<AppRow>> list_apps();
  Result<void> delete_app(std::string_view name, bool force);

  // Machines. insert_machine adds the row, its version 1 and `launch` in one transaction;
  // Errc::not_found for a missing app, Errc::exists for a name taken in the app or an id in
  // use, Errc::busy for a network subnet (boot's network.subnet) a live machine has (the
  // caller picks another). Blanks are filled in: state "created", instance_id a new ULID,
  // times now; `launch` as in Transition::event.
  Result<void> insert_machine(const MachineRow& machine, const EventRow& launch);
  // By id, or by name within `app` (empty app: a name must be unique across apps, else
  // Errc::invalid_argument naming them). With an app, an id of another app's machine is not
  // found. Destroyed machines are found by id only. Listing orders by created_at, then id.
  Result<MachineRow> get_machine(std::string_view app, std::string_view id_or_name);
  Result<std::vector<MachineRow>> list_machines(const MachineFilter& filter);
  // Errc::not_found, Errc::busy (state not in `from`: "machine ID is STATE"), Errc::lease_held
  // ("machine ID <id> lease currently held by OWNER, expires at TIME", Fly's text). Moving to
  // "destroyed" also drops the lease and detaches the machine's volumes. Returns the updated row.
  Result<MachineRow> transition(const Transition& t);
  // A new config version (version+1, new instance_id); the old one stays in versions().
  // `expect_version` (when non-zero) must match (Errc::busy). Lease-guarded like transition();
  // Errc::busy for a destroyed machine (set_cordoned too). `boot`, when given, replaces
  // MachineRow::boot in the same transaction.
  Result<MachineRow> update_config(std::string_view machine_id, std::string config_json,
                                   uint64_t expect_version, const std::optional<std::string>& lease_nonce,
                                   const std::optional<std::string>& boot = std::nullopt);
  // Sets config.metadata[key] (removes it when `value` is nullopt) in the current config, in
  // place: no new version, as Fly's metadata endpoints; not lease-guarded (Fly's are not).
  // The caller validates the key. Errc::busy for a destroyed machine.
  Result<MachineRow> set_metadata(std::string_view machine_id, std::string_view key,
                                  const std::optional<std::string>& value);
  // Errc::lease_held unless the machine has no live lease or `lease_nonce` is its nonce:
  // for calls that change a machine without a store write of their own (stop, signal).
  Result<void> check_lease(std::string_view machine_id, const std::optional<std::string>& lease_nonce);
  Result<void> set_cordoned(std::string_view machine_id, bool cordoned,
                            const std::optional<std::string>& lease_nonce);
  Result<std::vector<VersionRow>> versions(std::string_view machine_id);  // newest first

  // Events, newest first; `after_id` > 0 returns only newer ones (for followers); `limit` 0:
  // all. append_event fills a zero timestamp with now; Errc::not_found for a missing machine.
  Result<EventRow> append_event(EventRow event);
  Result<std::vector<EventRow>> events(std::string_view machine_id, size_t limit, int64_t after_id = 0);

  // Leases (expired ones are as good as absent). acquire: no lease or an expired one, or a
  // refresh with the holder's nonce (a new expiry and version; same nonce and owner);
  // Errc::lease_held naming the owner otherwise. A new lease gets a new nonce even when `nonce` is
  // given. release: Errc::not_found "lease not found" unless `nonce` is the lease's.
  Result<LeaseRow> acquire_lease(std::string_view machine_id, int64_t ttl_s, std::string_view owner,
                                 std::string_view description, const std::optional<std::string>& nonce);
  Result<LeaseRow> get_lease(std::string_view machine_id);  // Errc::not_found if none live
  Result<void> release_lease(std::string_view machine_id, std::string_view nonce);

  // Volumes. attach fails with Errc::busy when another machine holds it; delete while attached
  // too (destroying a destroyed volume is a no-op). insert_volume needs an id (new_volume_id());
  // an empty state is "created", a zero time now. set_volume_size only grows a volume.
  Result<void> insert_volume(const VolumeRow& volume);  // Errc::not_found for a missing app
  // By id, else by name among the volumes not destroyed (Errc::invalid_argument when the name
  // is not unique in the app, or across apps when `app` is empty).
  Result<VolumeRow> get_volume(std::string_view app, std::string_view id_or_name);
  Result<std::vector<VolumeRow>> list_volumes(std::string_view app,  // empty app: all
                                              bool include_destroyed = false);
  Result<void> attach_volume(std::string_view volume_id, std::string_view machine_id);
  Result<void> detach_volumes(std::string_view machine_id);
  Result<void> set_volume_size(std::string_view volume_id, uint64_t size_gb);
  Result<void> mark_volume_destroyed(std::string_view volume_id);

  // Changes by any connection (any process, this one too) since the last call to this one
  // (or open()): a cheap check for waiters, which also watch path()+"-wal" to learn when to
  // call it.
  Result<bool> changed_since_last_check();

  Result<std::string> integrity_check();  // "ok" when the database is sound

 private:
  MachineStore(std::filesystem::path path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  int64_t data_version_ = -1;  // PRAGMA data_version at the last check (others' commits)
  int64_t own_changes_ = -1;   // sqlite3_total_changes64 then (this connection's)
};

}  // namespace flick::store
