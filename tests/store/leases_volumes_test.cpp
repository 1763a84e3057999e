// MachineStore: leases (Fly's semantics and texts) and volumes.
#include "store_fixture.h"

namespace flick::store::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using MachineStoreLeases = StoreTest;

TEST_F(MachineStoreLeases, AcquireRefreshConflictRelease) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  ERROR_OF(s.get_lease("m1"), Errc::not_found);
  ERROR_OF(s.acquire_lease("nope", 60, "alice", "", std::nullopt), Errc::not_found);
  ERROR_OF(s.acquire_lease("m1", 0, "alice", "", std::nullopt), Errc::invalid_argument);

  LeaseRow a = VALUE(s.acquire_lease("m1", 60, "alice", "deploying", std::nullopt));
  EXPECT_EQ(a.nonce.size(), 32u);
  EXPECT_EQ(a.nonce.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a.version.size(), 26u);
  EXPECT_EQ(a.owner, "alice");
  EXPECT_NEAR(static_cast<double>(a.expires_at_s), static_cast<double>(now_ms() / 1000 + 60), 2.0);
  LeaseRow got = VALUE(s.get_lease("m1"));
  EXPECT_EQ(got.nonce, a.nonce);
  EXPECT_EQ(got.description, "deploying");

  // Another caller (no nonce, or a wrong one) gets Fly's text.
  Error e = ERROR_OF(s.acquire_lease("m1", 60, "bob", "", std::nullopt), Errc::lease_held);
  EXPECT_THAT(e.message, StartsWith("machine ID m1 lease currently held by alice, expires at 20"));
  EXPECT_THAT(e.message, HasSubstr("Z"));
  ERROR_OF(s.acquire_lease("m1", 60, "bob", "", std::string("0123")), Errc::lease_held);

  // The holder refreshes: same nonce, new version and expiry.
  LeaseRow r = VALUE(s.acquire_lease("m1", 600, "alice", "", a.nonce));
  EXPECT_EQ(r.nonce, a.nonce);
  EXPECT_NE(r.version, a.version);
  EXPECT_GT(r.expires_at_s, a.expires_at_s);
  EXPECT_EQ(VALUE(s.get_lease("m1")).expires_at_s, r.expires_at_s);

  EXPECT_THAT(ERROR_OF(s.release_lease("m1", "wrong"), Errc::not_found).message, StartsWith("lease not found"));
  EXPECT_EQ(VALUE(s.get_lease("m1")).nonce, a.nonce);  // still held
  ASSERT_OK(s.release_lease("m1", a.nonce));
  ERROR_OF(s.get_lease("m1"), Errc::not_found);
  ERROR_OF(s.release_lease("m1", a.nonce), Errc::not_found);
  LeaseRow b = VALUE(s.acquire_lease("m1", 60, "bob", "", std::nullopt));
  EXPECT_NE(b.nonce, a.nonce);
}

TEST_F(MachineStoreLeases, MutationsNeedTheNonceWhileHeld) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  LeaseRow a = VALUE(s.acquire_lease("m1", 60, "alice", "", std::nullopt));
  Error e = ERROR_OF(s.transition({.machine_id = "m1", .from = {"created"}, .to = "starting"}), Errc::lease_held);
  EXPECT_THAT(e.message, StartsWith("machine ID m1 lease currently held by alice"));
  ERROR_OF(s.transition({.machine_id = "m1", .to = "starting", .lease_nonce = std::string("bad")}), Errc::lease_held);
  ERROR_OF(s.update_config("m1", "{}", 0, std::nullopt), Errc::lease_held);
  ERROR_OF(s.set_cordoned("m1", true, std::string("bad")), Errc::lease_held);
  ERROR_OF(s.check_lease("m1", std::nullopt), Errc::lease_held);
  ERROR_OF(s.check_lease("m1", std::string("bad")), Errc::lease_held);
  ASSERT_OK(s.check_lease("m1", a.nonce));
  // The machine's own run records its changes whoever holds the lease; metadata is unguarded (Fly).
  ASSERT_OK(s.transition({.machine_id = "m1", .from = {"created"}, .to = "failed", .by_run = true}));
  ASSERT_OK(s.transition({.machine_id = "m1", .from = {"failed"}, .to = "created", .by_run = true}));
  ASSERT_OK(s.set_metadata("m1", "role", std::string("web")));
  EXPECT_EQ(VALUE(s.get_machine("", "m1")).state, "created");
  EXPECT_EQ(VALUE(s.events("m1", 0)).size(), 1u);  // the refused calls added no event

  ASSERT_OK(s.transition({.machine_id = "m1", .from = {"created"}, .to = "starting", .lease_nonce = a.nonce,
                          .event = event("start")}));
  ASSERT_OK(s.update_config("m1", "{}", 0, a.nonce));
  ASSERT_OK(s.set_cordoned("m1", true, a.nonce));
  ASSERT_OK(s.release_lease("m1", a.nonce));
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "stopped"}));  // no lease: no nonce needed
}

TEST_F(MachineStoreLeases, AnExpiredLeaseIsAsGoodAsNone) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  LeaseRow a = VALUE(s.acquire_lease("m1", 60, "alice", "", std::nullopt));
  // Age it through another connection rather than sleeping past a 1 s ttl.
  raw_exec(db_path(), "UPDATE leases SET expires_at = expires_at - 3600");
  ERROR_OF(s.get_lease("m1"), Errc::not_found);
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "starting"}));  // not guarded any more

  LeaseRow b = VALUE(s.acquire_lease("m1", 60, "bob", "", std::nullopt));
  EXPECT_NE(b.nonce, a.nonce);
  EXPECT_EQ(b.owner, "bob");
  // alice's old nonce refreshes nothing now.
  EXPECT_THAT(ERROR_OF(s.acquire_lease("m1", 60, "alice", "", a.nonce), Errc::lease_held).message,
              HasSubstr("held by bob"));
}

TEST_F(MachineStoreLeases, ADestroyedMachineTakesNoLease) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  ASSERT_OK(s.transition({.machine_id = "m1", .to = "destroyed"}));
  EXPECT_EQ(ERROR_OF(s.acquire_lease("m1", 60, "alice", "", std::nullopt), Errc::busy).message,
            "machine m1 is destroyed");
}

// --- Volumes ---

using MachineStoreVolumes = StoreTest;

TEST_F(MachineStoreVolumes, InsertGetAndList) {
  MachineStore s = open_store();
  ASSERT_OK(s.ensure_app("web"));
  ASSERT_OK(s.ensure_app("api"));
  std::string v1 = new_volume_id(), v2 = new_volume_id(), v3 = new_volume_id(), v4 = new_volume_id();
  ERROR_OF(s.insert_volume({.id = v1, .name = "data", .app = "nope"}), Errc::not_found);
  ERROR_OF(s.insert_volume({.id = v1, .name = "Bad-Name", .app = "web"}), Errc::invalid_argument);
  ERROR_OF(s.insert_volume({.id = "", .name = "data", .app = "web"}), Errc::invalid_argument);
  ASSERT_OK(s.insert_volume({.id = v1, .name = "data", .app = "web", .region = "ams", .size_gb = 3,
                             .path = "/v/1.ext4", .created_at_ms = 100}));
  ERROR_OF(s.insert_volume({.id = v1, .name = "data", .app = "web"}), Errc::exists);
  ASSERT_OK(s.insert_volume({.id = v2, .name = "logs", .app = "web", .created_at_ms = 200}));
  ASSERT_OK(s.insert_volume({.id = v3, .name = "logs", .app = "web", .created_at_ms = 300}));
  ASSERT_OK(s.insert_volume({.id = v4, .name = "data", .app = "api", .created_at_ms = 400}));

  VolumeRow got = VALUE(s.get_volume("web", v1));
  EXPECT_EQ(got.name, "data");
  EXPECT_EQ(got.size_gb, 3u);
  EXPECT_EQ(got.path, "/v/1.ext4");
  EXPECT_EQ(got.state, "created");
  EXPECT_EQ(got.attached_machine_id, "");
  EXPECT_EQ(VALUE(s.get_volume("web", "data")).id, v1);
  EXPECT_EQ(VALUE(s.get_volume("", v4)).app, "api");
  ERROR_OF(s.get_volume("web", v4), Errc::not_found);  // another app's id

  Error e = ERROR_OF(s.get_volume("web", "logs"), Errc::invalid_argument);
  EXPECT_EQ(e.message, "volume name logs is not unique in app web: use its id");
  e = ERROR_OF(s.get_volume("", "data"), Errc::invalid_argument);
  EXPECT_THAT(e.message, HasSubstr("api, web"));
  EXPECT_EQ(ERROR_OF(s.get_volume("web", "ghost"), Errc::not_found).message, "volume ghost not found in app web");

  ASSERT_OK(s.mark_volume_destroyed(v3));
  EXPECT_EQ(VALUE(s.get_volume("web", "logs")).id, v2);  // a destroyed one no longer counts
  EXPECT_EQ(VALUE(s.get_volume("web", v3)).state, "destroyed");
  EXPECT_EQ(VALUE(s.list_volumes("web")).size(), 2u);
  EXPECT_EQ(VALUE(s.list_volumes("web", true)).size(), 3u);
  auto all = VALUE(s.list_volumes(""));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, v1);
  EXPECT_EQ(all[2].id, v4);
}

TEST_F(MachineStoreVolumes, AttachDetachResizeDestroyRules) {
  MachineStore s = open_store();
  add_machine(s, "web", "m1", "one");
  add_machine(s, "web", "m2", "two");
  add_machine(s, "api", "m3", "three");
  std::string v = new_volume_id();
  ASSERT_OK(s.insert_volume({.id = v, .name = "data", .app = "web", .size_gb = 2}));

  ERROR_OF(s.attach_volume("vol_nope", "m1"), Errc::not_found);
  ERROR_OF(s.attach_volume(v, "nope"), Errc::not_found);
  ERROR_OF(s.attach_volume(v, "m3"), Errc::invalid_argument);  // another app's machine
  ASSERT_OK(s.attach_volume(v, "m1"));
  ASSERT_OK(s.attach_volume(v, "m1"));  // again: nothing to do
  EXPECT_EQ(VALUE(s.get_volume("web", v)).attached_machine_id, "m1");
  Error e = ERROR_OF(s.attach_volume(v, "m2"), Errc::busy);
  EXPECT_EQ(e.message, "volume " + v + " is attached to machine m1");
  e = ERROR_OF(s.mark_volume_destroyed(v), Errc::busy);
  EXPECT_EQ(e.message, "volume " + v + " is attached to machine m1");

  ASSERT_OK(s.set_volume_size(v, 5));
  EXPECT_EQ(VALUE(s.get_volume("", v)).size_gb, 5u);
  ERROR_OF(s.set_volume_size(v, 4), Errc::invalid_argument);
  ERROR_OF(s.set_volume_size("vol_nope", 9), Errc::not_found);

  ERROR_OF(s.detach_volumes("nope"), Errc::not_found);
  ASSERT_OK(s.detach_volumes("m1"));
  EXPECT_EQ(VALUE(s.get_volume("", v)).attached_machine_id, "");
  ASSERT_OK(s.attach_volume(v, "m2"));
  ASSERT_OK(s.detach_volumes("m2"));
  ASSERT_OK(s.mark_volume_destroyed(v));
  ASSERT_OK(s.mark_volume_destroyed(v));  // already: nothing to do
  ERROR_OF(s.attach_volume(v, "m1"), Errc::busy);
  ERROR_OF(s.set_volume_size(v, 10), Errc::busy);

  std::string w = new_volume_id();
  ASSERT_OK(s.insert_volume({.id = w, .name = "more", .app = "web"}));
  ASSERT_OK(s.transition({.machine_id = "m2", .to = "destroyed"}));
  ERROR_OF(s.attach_volume(w, "m2"), Errc::busy);  // a destroyed machine
  EXPECT_EQ(VALUE(s.get_app("web")).volume_count, 1u);
}

}  // namespace
}  // namespace flick::store::testing
