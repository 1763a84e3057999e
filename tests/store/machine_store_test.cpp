// MachineStore: opening and migrating, apps, machines, state changes, config versions, events.
#include "store_fixture.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

namespace flick::store::testing {
namespace {

using ::testing::HasSubstr;

using MachineStoreOpen = StoreTest;

TEST_F(MachineStoreOpen, CreatesItsDirectoryMigratesAndReopens) {
  {
    MachineStore s = open_store();
    EXPECT_TRUE(std::filesystem::exists(db_path()));
    ASSERT_OK(s.create_app({.name = "web", .org_slug = "acme"}));
    EXPECT_EQ(VALUE(s.integrity_check()), "ok");
  }
  std::string version = "PRAGMA user_version";
  sqlite3* c = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &c), SQLITE_OK);
  auto scalar = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(c, sql, -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
  };
  EXPECT_EQ(scalar("PRAGMA user_version"), std::to_string(MachineStore::schema_version()));
  EXPECT_EQ(scalar("PRAGMA journal_mode"), "wal");
  sqlite3_close(c);

  MachineStore again = open_store();  // an up-to-date schema: nothing to migrate
  AppRow app = VALUE(again.get_app("web"));
  EXPECT_EQ(app.org_slug, "acme");
  EXPECT_GT(app.created_at_ms, 0);
}

TEST_F(MachineStoreOpen, TwoConnectionsOpenTheSameNewStore) {
  MachineStore a = open_store();
  MachineStore b = open_store();
  ASSERT_OK(a.ensure_app("one"));
  EXPECT_EQ(VALUE(b.get_app("one")).name, "one");
}

// WAL: readers go on while another connection writes, and a writer waits (busy timeout)
// for the lock instead of failing.
TEST_F(MachineStoreOpen, ReadersGoOnAndWritersWaitWhileAnotherConnectionWrites) {
  MachineStore s = open_store();
  ASSERT_OK(s.ensure_app("web"));
  sqlite3* c = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &c), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(c, "BEGIN IMMEDIATE; INSERT INTO apps VALUES ('other', 'x', 1)", nullptr, nullptr,
                         nullptr), SQLITE_OK);
  EXPECT_EQ(VALUE(s.list_apps()).size(), 1u);  // not blocked, and sees only committed rows

  auto start = std::chrono::steady_clock::now();
  std::thread holder([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3_exec(c, "COMMIT", nullptr, nullptr, nullptr);
  });
  ASSERT_OK(s.ensure_app("api"));  // waits for the COMMIT
  holder.join();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  sqlite3_close(c);
  EXPECT_EQ(VALUE(s.list_apps()).size(), 3u);
}

TEST_F(MachineStoreOpen, RefusesAStoreFromANewerFlick) {
  { MachineStore s = open_store(); }
  int newer = MachineStore::schema_version() + 1;
  raw_exec(db_path(), "PRAGMA user_version = " + std::to_string(newer));
  Error e = ERROR_OF(MachineStore::open(db_path()), Errc::unsupported);
  EXPECT_THAT(e.message, HasSubstr("schema version " + std::to_string(newer)));
  EXPECT_THAT(e.message, HasSubstr("this flick's " + std::to_string(MachineStore::schema_version())));
  EXPECT_THAT(e.message, HasSubstr(db_path().string()));
}

TEST_F(MachineStoreOpen, RefusesAFileThatIsNotADatabase) {
  flick::testing::write_file(db_path(), std::string(8192, 'x') + "not a database at all\n");
  Error e = ERROR_OF(MachineStore::open(db_path()), Errc::malformed);
  EXPECT_THAT(e.message, HasSubstr(db_path().string()));
  EXPECT_THAT(e.message, HasSubstr("not a database"));
  // ...and leaves the file alone.
  EXPECT_EQ(flick::testing::read_file(db_path()), std::string(8192, 'x') + "not a database at all\n");
}

TEST_F(MachineStoreOpen, MovedFromStoreIsHarmless) {
  MachineStore a = open_store();
  MachineStore b = std::move(a);
  ASSERT_OK(b.ensure_app("x"));
  a = std::move(b);
  EXPECT_EQ(VALUE(a.list_apps()).size(), 1u);
}

TEST(MachineStoreIds, UlidsAndVolumeIds) {
  const std::string crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  std::string a = new_ulid();
  ASSERT_EQ(a.size(), 26u);
  EXPECT_EQ(a.find_first_not_of(crockford), std::string::npos) << a;
  // The first 10 characters are the time in ms: later ids sort after.
  std::string b = new_ulid();
  EXPECT_LE(a.substr(0, 10), b.substr(0, 10));
  EXPECT_NE(a, b);
  std::set<std::string> vols;
  for (int i = 0; i < 100; ++i) {
    std::string v = new_volume_id();
    ASSERT_EQ(v.size(), 20u);
    EXPECT_EQ(v.substr(0, 4), "vol_");
    EXPECT_EQ(v.find_first_not_of("0123456789abcdefghjkmnpqrstvwxyz", 4), std::string::npos) << v;
    vols.insert(v);
  }
  EXPECT_EQ(vols.size(), 100u);
}

// --- Apps ---

using MachineStoreApps = StoreTest;

TEST_F(MachineStoreApps, CreateGetListAndErrors) {
  MachineStore s = open_store();
  ASSERT_OK(s.create_app({.name = "b-app"}));
  ASSERT_OK(s.create_app({.name = "a-app", .org_slug = "acme"}));
  EXPECT_EQ(VALUE(s.get_app("b-app")).org_slug, "personal");
  EXPECT_THAT(ERROR_OF(s.create_app({.name = "b-app"}), Errc::exists).message,
              HasSubstr("app name b-app has already been taken"));
  ERROR_OF(s.create_app({.name = "Bad_Name"}), Errc::invalid_argument);
  ERROR_OF(s.create_app({.name = ""}), Errc::invalid_argument);
  ERROR_OF(s.create_app({.name = std::string(64, 'a')}), Errc::invalid_argument);
  EXPECT_EQ(ERROR_OF(s.get_app("nope"), Errc::not_found).message, "app nope not found");

  ASSERT_OK(s.ensure_app("b-app"));  // there already: no change
  ASSERT_OK(s.ensure_app("c-app"));
  auto apps = VALUE(s.list_apps());
  ASSERT_EQ(apps.size(), 3u);
  EXPECT_EQ(apps[0].name, "a-app");
  EXPECT_EQ(apps[0].org_slug, "acme");
  EXPECT_EQ(apps[2].name, "c-app");
}

TEST_F(MachineStoreApps, CountsAndDeleteRules) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  add_machine(s, "web", "m2", "two");
  ASSERT_OK(s.insert_volume({.id = new_volume_id(), .name = "data", .app = "web"}));
  AppRow app = VALUE(s.get_app("web"));
  EXPECT_EQ(app.machine_count, 2u);
  EXPECT_EQ(app.volume_count, 1u);

  Error e = ERROR_OF(s.delete_app("web", false), Errc::busy);
  EXPECT_THAT(e.message, HasSubstr("2 machines and 1 volumes"));
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed"}));
  EXPECT_EQ(VALUE(s.get_app("web")).machine_count, 1u);

  ASSERT_OK(s.delete_app("web", true));
  ERROR_OF(s.get_app("web"), Errc::not_found);
  ERROR_OF(s.get_machine("", "m1"), Errc::not_found);
  EXPECT_TRUE(VALUE(s.list_machines({.include_destroyed = true})).empty());
  EXPECT_TRUE(VALUE(s.list_volumes("", true)).empty());
  ERROR_OF(s.delete_app("web", true), Errc::not_found);

  // Only destroyed machines left: no force needed.
  add_machine(s, "api", "m3", "three");
  ASSERT_OK(s.transition({.machine_id = "m3", .to = "destroyed"}));
  ASSERT_OK(s.delete_app("api", false));
}

// --- Machines ---

using MachineStoreMachines = StoreTest;

TEST_F(MachineStoreMachines, InsertFillsBlanksAndWritesVersionAndLaunch) {
  MachineStore s = open_store();
  ASSERT_OK(s.ensure_app("web"));
  ERROR_OF(s.insert_machine(make_machine("m1", "one", "nope"), event("launch")), Errc::not_found);
  ERROR_OF(s.insert_machine(make_machine("", "one", "web"), event("launch")), Errc::invalid_argument);
  ERROR_OF(s.insert_machine(make_machine("m1", "one", "web", "{not json"), event("launch")),
           Errc::invalid_argument);
  ASSERT_OK(s.insert_machine(make_machine("m1", "one", "web", R"({"image":"alpine"})"), event("launch")));
  EXPECT_THAT(ERROR_OF(s.insert_machine(make_machine("m1", "other", "web"), event("launch")), Errc::exists).message,
              HasSubstr("machine m1 already exists"));

  MachineRow m = VALUE(s.get_machine("web", "m1"));
  EXPECT_EQ(m.state, "created");
  EXPECT_EQ(m.version, 1u);
  EXPECT_EQ(m.instance_id.size(), 26u);
  EXPECT_GT(m.created_at_ms, 0);
  EXPECT_EQ(m.updated_at_ms, m.created_at_ms);
  EXPECT_EQ(m.config, R"({"image":"alpine"})");

  auto versions = VALUE(s.versions("m1"));
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].version, 1u);
  EXPECT_EQ(versions[0].instance_id, m.instance_id);
  auto events = VALUE(s.events("m1", 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "launch");
  EXPECT_EQ(events[0].status, "created");
  EXPECT_EQ(events[0].machine_id, "m1");
  EXPECT_GT(events[0].timestamp_ms, 0);
}

TEST_F(MachineStoreMachines, GetByIdOrNameAndItsErrors) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "shared");
  add_machine(s, "api", "m2", "shared");
  add_machine(s, "api", "m3", "solo");

  EXPECT_EQ(VALUE(s.get_machine("", "m1")).name, "shared");
  EXPECT_EQ(VALUE(s.get_machine("web", "shared")).id, "m1");
  EXPECT_EQ(VALUE(s.get_machine("api", "shared")).id, "m2");
  EXPECT_EQ(VALUE(s.get_machine("", "solo")).id, "m3");

  Error e = ERROR_OF(s.get_machine("", "shared"), Errc::invalid_argument);
  EXPECT_THAT(e.message, HasSubstr("ambiguous"));
  EXPECT_THAT(e.message, HasSubstr("api, web"));
  EXPECT_EQ(ERROR_OF(s.get_machine("", "ghost"), Errc::not_found).message, "machine ghost not found");
  EXPECT_EQ(ERROR_OF(s.get_machine("web", "ghost"), Errc::not_found).message, "machine ghost not found in app web");
  // An id of another app's machine does not leak across apps.
  ERROR_OF(s.get_machine("web", "m3"), Errc::not_found);
}

TEST_F(MachineStoreMachines, NameIsTakenUntilItsMachineIsDestroyed) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "db");
  add_machine(s, "api", "m9", "db");  // another app: no clash
  Error e = ERROR_OF(s.insert_machine(make_machine("m2", "db", "web"), event("launch")), Errc::exists);
  EXPECT_EQ(e.message, "machine name db is taken in app web");
  ERROR_OF(s.get_machine("", "m2"), Errc::not_found);  // nothing half-written
  EXPECT_EQ(VALUE(s.events("m1", 0)).size(), 1u);

  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed", .event = event("destroy")}));
  ASSERT_OK(s.insert_machine(make_machine("m2", "db", "web"), event("launch")));
  EXPECT_EQ(VALUE(s.get_machine("web", "db")).id, "m2");
  EXPECT_EQ(VALUE(s.get_machine("web", "m1")).state, "destroyed");  // by id only

  // Bringing the old one back would make two live machines of one name.
  e = ERROR_OF(s.transition({.machine_id = "m1", .from = {"destroyed"}, .to = "stopped"}), Errc::exists);
  EXPECT_EQ(e.message, "machine name db is taken in app web");
}

TEST_F(MachineStoreMachines, ALiveMachinesSubnetIsItsOwn) {
  MachineStore s = open_store();
  ASSERT_OK(s.ensure_app("web"));
  auto with_subnet = [](std::string id, int subnet) {
    MachineRow m = make_machine(id, id, "web");
    m.boot = R"({"network":{"subnet":)" + std::to_string(subnet) + "}}";
    return m;
  };
  ASSERT_OK(s.insert_machine(with_subnet("m1", 7), event("launch")));
  Error e = ERROR_OF(s.insert_machine(with_subnet("m2", 7), event("launch")), Errc::busy);  // not a name clash
  EXPECT_NE(e.message.find("subnet is taken"), std::string::npos) << e.message;
  ASSERT_OK(s.insert_machine(with_subnet("m2", 8), event("launch")));
  ASSERT_OK(s.insert_machine(make_machine("m3", "m3", "web"), event("launch")));  // no network: no subnet
  ASSERT_OK(s.insert_machine(make_machine("m4", "m4", "web"), event("launch")));
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed", .event = event("destroy")}));
  ASSERT_OK(s.insert_machine(with_subnet("m5", 7), event("launch")));  // free again
}

TEST_F(MachineStoreMachines, ListFilters) {
  MachineStore s = open_store();
  ASSERT_OK(s.ensure_app("web"));
  ASSERT_OK(s.ensure_app("api"));
  auto add = [&](std::string id, std::string app, std::string region, std::string config, int64_t at) {
    MachineRow m = make_machine(id, "n-" + id, app, config, region);
    m.created_at_ms = at;
    ASSERT_OK(s.insert_machine(m, event("launch")));
  };
  add("m3", "web", "ams", R"({"metadata":{"role":"db","fly.io/process":"app"}})", 300);
  add("m1", "web", "ord", R"({"metadata":{"role":"web"}})", 100);
  add("m2", "api", "ams", R"({"metadata":{"role":"web","fly":{"io/process":"nested"}}})", 200);
  add("m0", "api", "ams", R"({"image":"x"})", 200);  // same time as m2: the id orders them
  add("m4", "web", "ams", R"({"metadata":{"say \"hi\"":"yes"}})", 400);
  ASSERT_OK(s.transition({.machine_id = "m2", .to = "started"}));
  ASSERT_OK(s.transition({.machine_id = "m4", .to = "destroyed"}));

  auto ids = [&](const MachineFilter& f) {
    std::vector<std::string> out;
    for (auto& m : VALUE(s.list_machines(f))) out.push_back(m.id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids({}), (V{"m1", "m0", "m2", "m3"}));
  EXPECT_EQ(ids({.include_destroyed = true}), (V{"m1", "m0", "m2", "m3", "m4"}));
  EXPECT_EQ(ids({.app = "web"}), (V{"m1", "m3"}));
  EXPECT_EQ(ids({.states = {"started"}}), (V{"m2"}));
  EXPECT_EQ(ids({.states = {"created", "started"}, .region = "ams"}), (V{"m0", "m2", "m3"}));
  EXPECT_EQ(ids({.states = {"destroyed"}}), (V{"m4"}));
  EXPECT_EQ(ids({.region = "ord"}), (V{"m1"}));
  EXPECT_EQ(ids({.metadata = {{"role", "web"}}}), (V{"m1", "m2"}));
  EXPECT_EQ(ids({.app = "api", .metadata = {{"role", "web"}}}), (V{"m2"}));
  EXPECT_EQ(ids({.metadata = {{"role", "web"}, {"role", "db"}}}), V{});
  // A key with a dot is one key, not a path into nested objects.
  EXPECT_EQ(ids({.metadata = {{"fly.io/process", "app"}}}), (V{"m3"}));
  EXPECT_EQ(ids({.metadata = {{"fly.io/process", "nested"}}}), V{});
  EXPECT_EQ(ids({.metadata = {{"say \"hi\"", "yes"}}, .include_destroyed = true}), (V{"m4"}));
  EXPECT_EQ(ids({.metadata = {{"missing", ""}}}), V{});
}

TEST_F(MachineStoreMachines, SqlInKeysAndValuesIsData) {
  MachineStore s = open_store();
  const std::string evil = "'); DROP TABLE machines;--";
  const std::string quoted = "it's \"quoted\" \\ $.x";
  std::string config = R"({"metadata":{"'); DROP TABLE machines;--":"it's \"quoted\" \\ $.x"}})";
  add_machine(s, "web", "m1", evil, config);
  add_machine(s, "web", "m2", "plain");

  auto hits = VALUE(s.list_machines({.metadata = {{evil, quoted}}}));
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "m1");
  EXPECT_TRUE(VALUE(s.list_machines({.metadata = {{evil, "x' OR '1'='1"}}})).empty());
  EXPECT_TRUE(VALUE(s.list_machines({.app = "web' OR '1'='1"})).empty());
  EXPECT_TRUE(VALUE(s.list_machines({.states = {"created') OR ('1'='1"}})).empty());
  EXPECT_EQ(VALUE(s.get_machine("web", evil)).id, "m1");
  ERROR_OF(s.get_machine("", "x' OR '1'='1"), Errc::not_found);
  EXPECT_EQ(VALUE(s.list_machines({})).size(), 2u);  // the table is still there
  EXPECT_EQ(VALUE(s.integrity_check()), "ok");
}

// --- State changes ---

using MachineStoreTransitions = StoreTest;

TEST_F(MachineStoreTransitions, CompareAndSetWithEvents) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  ERROR_OF(s.transition({.machine_id = "nope", .to = "started"}), Errc::not_found);

  EventRow start = event("start");
  MachineRow m = VALUE(s.transition({.machine_id = "m1", .from = {"created", "stopped"}, .to = "starting",
                                     .event = start, .boot = std::string(R"({"kernel":"k"})")}));
  EXPECT_EQ(m.state, "starting");
  EXPECT_EQ(m.boot, R"({"kernel":"k"})");
  EXPECT_GE(m.updated_at_ms, m.created_at_ms);

  Error e = ERROR_OF(s.transition({.machine_id = "m1", .from = {"created", "stopped"}, .to = "starting"}),
                     Errc::busy);
  EXPECT_EQ(e.message, "machine m1 is starting");

  EventRow ex = event("exit", "flick");
  ex.request = R"({"exit_event":{"exit_code":3}})";
  m = VALUE(s.transition({.machine_id = "m1", .from = {"starting"}, .to = "stopped", .event = ex,
                          .last_exit = std::string(R"({"exit_code":3})")}));
  EXPECT_EQ(m.last_exit, R"({"exit_code":3})");
  EXPECT_EQ(m.boot, R"({"kernel":"k"})");  // not given: kept

  auto events = VALUE(s.events("m1", 10));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, "exit");
  EXPECT_EQ(events[0].status, "stopped");  // filled in from `to`
  EXPECT_EQ(events[0].source, "flick");
  EXPECT_EQ(events[0].request, R"({"exit_event":{"exit_code":3}})");
  EXPECT_EQ(events[1].type, "start");
  EXPECT_EQ(events[1].status, "starting");

  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed"}));
  e = ERROR_OF(s.transition({.machine_id = "m1", .to = "started"}), Errc::busy);  // any but destroyed
  EXPECT_EQ(e.message, "machine m1 is destroyed");
  ERROR_OF(s.transition({.machine_id = "m1", .to = ""}), Errc::invalid_argument);
}

TEST_F(MachineStoreTransitions, DestroyDropsLeaseAndDetachesVolumes) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  std::string vol = new_volume_id();
  ASSERT_OK(s.insert_volume({.id = vol, .name = "data", .app = "web"}));
  ASSERT_OK(s.attach_volume(vol, "m1"));
  LeaseRow lease = VALUE(s.acquire_lease("m1", 60, "alice", "deploy", std::nullopt));

  ERROR_OF(s.transition({.machine_id = "m1", .to = "destroyed"}), Errc::lease_held);  // no nonce
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed", .lease_nonce = lease.nonce}));
  ERROR_OF(s.get_lease("m1"), Errc::not_found);
  EXPECT_EQ(VALUE(s.get_volume("web", vol)).attached_machine_id, "");
  sqlite3* c = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &c), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(c, "SELECT destroyed_at FROM machines WHERE id = 'm1'", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_GE(sqlite3_column_int64(st, 0), VALUE(s.get_machine("", "m1")).created_at_ms);
  sqlite3_finalize(st);
  sqlite3_close(c);
}

// --- Config versions ---

using MachineStoreConfig = StoreTest;

TEST_F(MachineStoreConfig, UpdatesAddVersionsAndNewInstanceIds) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one", R"({"image":"a"})");
  MachineRow v1 = VALUE(s.get_machine("", "m1"));

  MachineRow v2 = VALUE(s.update_config("m1", R"({"image":"b"})", 1, std::nullopt));
  EXPECT_EQ(v2.version, 2u);
  EXPECT_NE(v2.instance_id, v1.instance_id);
  EXPECT_EQ(v2.config, R"({"image":"b"})");

  Error e = ERROR_OF(s.update_config("m1", R"({"image":"c"})", 1, std::nullopt), Errc::busy);
  EXPECT_THAT(e.message, HasSubstr("config version 2, not 1"));
  ERROR_OF(s.update_config("m1", "{oops", 0, std::nullopt), Errc::invalid_argument);
  MachineRow v3 = VALUE(s.update_config("m1", R"({"image":"c"})", 0, std::nullopt));
  EXPECT_EQ(v3.version, 3u);

  auto versions = VALUE(s.versions("m1"));
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0].version, 3u);
  EXPECT_EQ(versions[0].instance_id, v3.instance_id);
  EXPECT_EQ(versions[1].config, R"({"image":"b"})");
  EXPECT_EQ(versions[2].instance_id, v1.instance_id);
  ERROR_OF(s.versions("nope"), Errc::not_found);

  ASSERT_OK(s.set_cordoned("m1", true, std::nullopt));
  EXPECT_TRUE(VALUE(s.get_machine("", "m1")).cordoned);
  ASSERT_OK(s.set_cordoned("m1", false, std::nullopt));
  EXPECT_FALSE(VALUE(s.get_machine("", "m1")).cordoned);

  // A new boot goes with the config, in the same version.
  MachineRow v4 = VALUE(s.update_config("m1", R"({"image":"d"})", 3, std::nullopt, std::string(R"({"k":1})")));
  EXPECT_EQ(v4.boot, R"({"k":1})");
  EXPECT_EQ(VALUE(s.update_config("m1", R"({"image":"e"})", 4, std::nullopt)).boot, R"({"k":1})");

  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed"}));
  ERROR_OF(s.update_config("m1", "{}", 0, std::nullopt), Errc::busy);
  ERROR_OF(s.set_cordoned("m1", true, std::nullopt), Errc::busy);
  ERROR_OF(s.set_metadata("m1", "k", std::string("v")), Errc::busy);
}

TEST_F(MachineStoreConfig, MetadataChangesInPlaceWithoutANewVersion) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one", R"({"image":"a","metadata":{"keep":"1"}})");
  MachineRow before = VALUE(s.get_machine("", "m1"));
  MachineRow set = VALUE(s.set_metadata("m1", "role.x-y_z", std::string("db")));
  EXPECT_EQ(set.config, R"({"image":"a","metadata":{"keep":"1","role.x-y_z":"db"}})");
  EXPECT_EQ(set.version, before.version);
  EXPECT_EQ(set.instance_id, before.instance_id);
  EXPECT_EQ(VALUE(s.versions("m1")).front().config, set.config);  // the current version says so too
  // Found by a metadata filter, from the same JSON.
  EXPECT_EQ(VALUE(s.list_machines({.metadata = {{"role.x-y_z", "db"}}})).size(), 1u);
  ASSERT_OK(s.set_metadata("m1", "keep", std::nullopt));
  ASSERT_OK(s.set_metadata("m1", "absent", std::nullopt));  // deleting what is not there is fine
  EXPECT_EQ(VALUE(s.set_metadata("m1", "role.x-y_z", std::nullopt)).config, R"({"image":"a"})");
  ERROR_OF(s.set_metadata("nope", "k", std::string("v")), Errc::not_found);
}

// --- Events ---

using MachineStoreEvents = StoreTest;

TEST_F(MachineStoreEvents, NewestFirstWithLimitAndAfterId) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  add_machine(s, "web", "m2", "two");
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    EventRow e = event("custom", "flick");
    e.machine_id = "m1";
    e.request = std::to_string(i);
    EventRow stored = VALUE(s.append_event(e));
    EXPECT_EQ(stored.status, "created");
    ids.push_back(stored.id);
    EventRow other = event("custom");
    other.machine_id = "m2";
    ASSERT_OK(s.append_event(other));  // interleaved: ids increase across the store
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));

  auto all = VALUE(s.events("m1", 0));
  ASSERT_EQ(all.size(), 6u);  // launch + 5
  EXPECT_EQ(all[0].request, "4");
  EXPECT_EQ(all[5].type, "launch");
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GT(all[i - 1].id, all[i].id);

  auto two = VALUE(s.events("m1", 2));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].request, "3");
  auto newer = VALUE(s.events("m1", 50, ids[2]));
  ASSERT_EQ(newer.size(), 2u);
  EXPECT_EQ(newer[0].id, ids[4]);
  EXPECT_EQ(newer[1].id, ids[3]);
  EXPECT_TRUE(VALUE(s.events("m1", 50, ids[4])).empty());

  EventRow orphan = event("custom");
  orphan.machine_id = "nope";
  ERROR_OF(s.append_event(orphan), Errc::not_found);
  ERROR_OF(s.events("nope", 10), Errc::not_found);
}

// --- Change notification ---

using MachineStoreChanges = StoreTest;

TEST_F(MachineStoreChanges, SeesCommitsOfAnotherConnectionAndItsOwn) {
  MachineStore waiter = open_store();
  MachineStore writer = open_store();
  EXPECT_FALSE(VALUE(waiter.changed_since_last_check()));
  ASSERT_OK(writer.ensure_app("web"));
  EXPECT_TRUE(VALUE(waiter.changed_since_last_check()));
  EXPECT_FALSE(VALUE(waiter.changed_since_last_check()));
  (void)VALUE(writer.list_apps());  // reads change nothing
  EXPECT_FALSE(VALUE(waiter.changed_since_last_check()));
  ASSERT_OK(waiter.ensure_app("api"));
  EXPECT_TRUE(VALUE(waiter.changed_since_last_check()));
  EXPECT_TRUE(VALUE(writer.changed_since_last_check()));
  EXPECT_FALSE(VALUE(writer.changed_since_last_check()));
}

}  // namespace
}  // namespace flick::store::testing
