// Machine::update, versions, metadata, cordon, leases and Host::clone where no machine boots:
// real stores in a scratch state directory, a busybox image built locally, the test guest as
// the kernel (create() needs one; nothing here starts it). A second Host on the same state
// directory plays another process. Starts that must fail do so before a VM exists (no KVM
// device, or no flick-vmm), which also leaves the per-start archive to read back.
#include <flick/machine.h>

#include "machine/cpio_reader.h"
#include "store/store_fixture.h"
#include "support/command.h"
#include "support/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>
#include <thread>

namespace {

using namespace flick;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using flick::testing::run_command;
using flick::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class MachineUpdate : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = run_command("python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py " + (dir_.path() / "layout").string());
    ASSERT_EQ(made.status, 0) << made.output;
    image_ = "oci:" + (dir_.path() / "layout").string() + ":latest";
    host_ = open_host();
    ASSERT_TRUE(host_);
  }

  // A Host whose starts fail before a VM exists: no flick-vmm to spawn.
  std::unique_ptr<Host> open_host() {
    HostOptions o;
    o.state_dir = dir_.path() / "state";
    o.cache_dir = dir_.path() / "cache";
    o.run_dir = dir_.path() / "run";
    o.kernel = FLICK_TESTGUEST_PVH;
    o.kvm_device = "/nonexistent/kvm";
    o.vmm_program = "/nonexistent/flick-vmm";
    o.network = HostOptions::Networking::none;
    auto h = Host::open(o);
    EXPECT_TRUE(h.ok()) << h.error().describe();
    return h.ok() ? std::move(h).value() : nullptr;
  }

  MachineConfig config() const {
    MachineConfig c;
    c.image = image_;
    c.env["GREETING"] = "one";
    c.init.cmd = {"sh", "-c", "echo $GREETING"};
    c.metadata["role"] = "web";
    return c;
  }

  std::unique_ptr<Machine> create(const MachineConfig& c, const std::string& name = {}) {
    auto m = host_->create(c, {}, name);
    EXPECT_TRUE(m.ok()) << m.error().describe();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  static std::string file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }

  TempDir dir_{"flick-machine-update"};
  std::string image_;
  std::unique_ptr<Host> host_;
};

TEST_F(MachineUpdate, ACreatedMachineGetsANewVersionAndKeepsTheOld) {
  auto m = create(config());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version(), 1u);
  const std::string first = m->instance_id();
  EXPECT_EQ(first.size(), 26u);

  MachineConfig next = config();
  next.env["GREETING"] = "two";
  next.guest.cpus = 2;
  next.guest.memory_mb = 128;
  next.restart.policy = RestartPolicy::always;
  ASSERT_OK(m->update(next, {.skip_launch = true}));
  EXPECT_EQ(m->version(), 2u);
  EXPECT_NE(m->instance_id(), first);
  EXPECT_EQ(m->config().env.at("GREETING"), "two");
  EXPECT_EQ(m->state(), MachineState::created);
  const auto events = m->events();
  ASSERT_EQ(events.size(), 2u);  // create, update
  EXPECT_EQ(events.back().type, MachineEventType::update);
  const auto newest = m->events(1);
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(newest[0].id, events.back().id);
  EXPECT_EQ(m->events(5).size(), 2u);

  auto versions = VALUE(m->versions());
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].version, 2u);
  EXPECT_EQ(versions[0].instance_id, m->instance_id());
  EXPECT_EQ(versions[0].config.guest.cpus, 2u);
  EXPECT_EQ(versions[1].instance_id, first);
  EXPECT_EQ(versions[1].config.env.at("GREETING"), "one");
  EXPECT_LE(versions[1].created_at, versions[0].created_at);

  // Another process sees the new config.
  auto other = open_host();
  auto seen = VALUE(other->get(m->id()));
  EXPECT_EQ(seen->config().guest.cpus, 2u);
  EXPECT_EQ(seen->config().restart.policy, RestartPolicy::always);
  EXPECT_EQ(seen->instance_id(), m->instance_id());

  // Fly's current_version, a config that does not validate, an image that does not exist:
  // refused, nothing changed.
  EXPECT_THAT(ERROR_OF(m->update(next, {.skip_launch = true, .current_version = 1}), Errc::busy).message,
              HasSubstr("config version 2, not 1"));
  MachineConfig bad = next;
  bad.guest.cpus = 0;
  ERROR_OF(m->update(bad, {.skip_launch = true}), Errc::invalid_argument);
  bad = next;
  bad.image = "oci:" + (dir_.path() / "nowhere").string();
  EXPECT_FALSE(m->update(bad, {.skip_launch = true}).ok());
  EXPECT_EQ(m->version(), 2u);
  EXPECT_EQ(VALUE(m->versions()).size(), 2u);
  ASSERT_OK(m->update(next, {.skip_launch = true, .current_version = 2}));
  EXPECT_EQ(m->version(), 3u);
}

TEST_F(MachineUpdate, TheRootfsHasTheConfiguredSizeAndTooSmallIsRefused) {
  auto m = create(config());
  ASSERT_TRUE(m);
  EXPECT_GE(fs::file_size(m->image().path), uint64_t{256} << 20);  // content plus 256 MiB

  MachineConfig sized = config();
  sized.guest.rootfs_size_mb = 64;
  auto small = create(sized);
  ASSERT_TRUE(small);
  EXPECT_EQ(fs::file_size(small->image().path), uint64_t{64} << 20);
  EXPECT_EQ(small->image().image_digest, m->image().image_digest);
  auto fsck = run_command("e2fsck -fn " + small->image().path.string());
  EXPECT_EQ(fsck.status, 0) << fsck.output;

  // An image with 24 MiB of content does not fit in 16 MiB: refused at create, naming the
  // field and the image; no machine is left behind.
  auto made = run_command("python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py --tag big --pad 24 " +
                          (dir_.path() / "layout").string());
  ASSERT_EQ(made.status, 0) << made.output;
  MachineConfig big = config();
  big.image = "oci:" + (dir_.path() / "layout").string() + ":big";
  big.guest.rootfs_size_mb = 16;
  const size_t machines = VALUE(host_->list()).size();
  Error e = ERROR_OF(host_->create(big), Errc::invalid_argument);
  EXPECT_THAT(e.message, HasSubstr("guest.rootfs_size_mb: 16 MiB is too small for image " + big.image));
  EXPECT_EQ(VALUE(host_->list()).size(), machines);
  big.guest.rootfs_size_mb = 8;  // below any ext4 image flick makes
  EXPECT_THAT(ERROR_OF(host_->create(big), Errc::invalid_argument).message, HasSubstr("16..1048576"));

  // An update to a size that does not fit changes nothing; one to another size rebuilds.
  big.guest.rootfs_size_mb = 16;
  ERROR_OF(small->update(big, {.skip_launch = true}), Errc::invalid_argument);
  EXPECT_EQ(small->config().guest.rootfs_size_mb, 64u);
  EXPECT_EQ(small->version(), 1u);
  big.guest.rootfs_size_mb = 96;
  ASSERT_OK(small->update(big, {.skip_launch = true}));
  EXPECT_EQ(fs::file_size(small->image().path), uint64_t{96} << 20);
  auto seen = VALUE(open_host()->get(small->id()));
  EXPECT_EQ(seen->config().guest.rootfs_size_mb, 96u);
  EXPECT_EQ(seen->image().path, small->image().path);
  EXPECT_NE(seen->image().image_digest, m->image().image_digest);
}

// `image rm --force` (or a pruned cache) took the machine's rootfs: its next start builds the
// same image again, or fails naming what changed.
TEST_F(MachineUpdate, AStartRestoresARootfsGoneFromTheCacheOrSaysWhyNot) {
  auto m = create(config());
  ASSERT_TRUE(m);
  const fs::path rootfs = m->image().path;
  auto images = VALUE(ImageStore::open(host_->options().cache_dir));
  ASSERT_OK(images.remove(image_));
  ASSERT_FALSE(fs::exists(rootfs));
  // No flick-vmm here: the start fails, but only after the rootfs is back.
  Error e = m->start().error();
  EXPECT_THAT(e.message, ::testing::Not(HasSubstr("rootfs"))) << e.describe();
  ASSERT_TRUE(fs::exists(rootfs));
  auto fsck = run_command("e2fsck -fn " + rootfs.string());
  EXPECT_EQ(fsck.status, 0) << fsck.output;

  // The tag now names another image: not what the machine was made with.
  auto made = run_command("python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py --env CHANGED=1 " +
                          (dir_.path() / "layout").string());
  ASSERT_EQ(made.status, 0) << made.output;
  ASSERT_OK(images.remove(image_));
  e = ERROR_OF(m->start(), Errc::not_found);
  EXPECT_THAT(e.message, HasSubstr("the rootfs of image " + image_ + " (" + m->image().image_digest +
                                   ") is gone from the image cache and cannot be rebuilt: " + image_ + " is now sha256:"));
  EXPECT_FALSE(fs::exists(rootfs));
  EXPECT_EQ(m->state(), MachineState::created);
}

TEST_F(MachineUpdate, WithoutSkipLaunchItStartsTheNewVersion) {
  auto m = create(config());
  ASSERT_TRUE(m);
  MachineConfig next = config();
  next.init.cmd = {"true"};
  // This Host cannot start machines (no flick-vmm): the update stands, the start's error says so.
  Error e = ERROR_OF(m->update(next), Errc::not_found);
  EXPECT_THAT(e.message, HasSubstr("is updated to version 2 but did not start"));
  EXPECT_EQ(m->version(), 2u);
  EXPECT_EQ(m->state(), MachineState::created);
  EXPECT_EQ(m->config().init.cmd, std::vector<std::string>{"true"});
}

TEST_F(MachineUpdate, TheGuestsMetadataFileGoesInEveryStartsArchive) {
  auto m = create(config());
  ASSERT_TRUE(m);
  ASSERT_OK(m->set_metadata("zone", "a"));
  // No flick-vmm here: the start fails after writing what the run would boot.
  auto h = VALUE(open_host()->get(m->id()));
  EXPECT_FALSE(h->start().ok());
  auto archive = file(host_->options().state_dir / "machines" / m->id() / "config.cpio");
  std::string error;
  auto items = machine::testing::read_cpio({archive.begin(), archive.end()}, &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_TRUE(items.count("flick/metadata.json"));
  auto j = nlohmann::json::parse(items["flick/metadata.json"].data);
  EXPECT_EQ(j["id"], m->id());
  EXPECT_EQ(j["name"], m->name());
  EXPECT_EQ(j["app"], "default");
  EXPECT_EQ(j["region"], "local");
  EXPECT_EQ(j["instance_id"], m->instance_id());
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["metadata"], (nlohmann::json{{"role", "web"}, {"zone", "a"}}));
  EXPECT_EQ(h->state(), MachineState::created);
}

TEST_F(MachineUpdate, MetadataChangesInPlaceAndEveryProcessSeesIt) {
  auto m = create(config());
  ASSERT_TRUE(m);
  const std::string instance = m->instance_id();
  ASSERT_OK(m->set_metadata("tier", "gold"));
  ASSERT_OK(m->set_metadata("role", "db"));
  EXPECT_EQ(VALUE(m->metadata()), (std::map<std::string, std::string>{{"role", "db"}, {"tier", "gold"}}));
  EXPECT_EQ(m->config().metadata.at("tier"), "gold");
  EXPECT_EQ(m->version(), 1u);  // Fly's metadata calls make no version
  EXPECT_EQ(m->instance_id(), instance);

  auto other = open_host();
  auto seen = VALUE(other->get(m->id()));
  EXPECT_EQ(VALUE(seen->metadata()).at("tier"), "gold");
  ASSERT_OK(seen->delete_metadata("tier"));
  ASSERT_OK(seen->delete_metadata("never-set"));
  EXPECT_EQ(VALUE(m->metadata()), (std::map<std::string, std::string>{{"role", "db"}}));
  Host::ListFilter by_role;
  by_role.metadata = {{"role", "db"}};
  EXPECT_EQ(VALUE(other->list(by_role)).size(), 1u);

  for (const std::string& bad : std::vector<std::string>{"", "a b", "k\"", "x/y", std::string(129, 'k')})
    ERROR_OF(m->set_metadata(bad, "v"), Errc::invalid_argument);
  ERROR_OF(m->delete_metadata("a b"), Errc::invalid_argument);
  ASSERT_OK(m->set_metadata("A-z_0.9", "ok"));
}

TEST_F(MachineUpdate, CordonIsKeptInTheStore) {
  auto m = create(config());
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->cordoned());
  ASSERT_OK(m->cordon());
  auto other = open_host();
  EXPECT_TRUE(VALUE(other->get(m->id()))->cordoned());
  ASSERT_OK(m->uncordon());
  EXPECT_FALSE(m->cordoned());
}

TEST_F(MachineUpdate, ALeaseGuardsEveryChangeFromAnyProcess) {
  auto m = create(config());
  ASSERT_TRUE(m);
  ERROR_OF(m->lease(), Errc::not_found);
  Lease lease = VALUE(m->acquire_lease(60s, "deploying", "alice@example.com"));
  EXPECT_EQ(lease.nonce.size(), 32u);
  EXPECT_EQ(m->lease_nonce(), lease.nonce);
  EXPECT_GT(lease.expires_at, std::chrono::system_clock::now() + 50s);

  auto other = open_host();
  auto them = VALUE(other->get(m->id()));
  EXPECT_EQ(VALUE(them->lease()).owner, "alice@example.com");
  Error e = ERROR_OF(them->update(config(), {.skip_launch = true}), Errc::lease_held);
  EXPECT_THAT(e.message, StartsWith("machine ID " + m->id() + " lease currently held by alice@example.com, expires at "));
  ERROR_OF(them->start(), Errc::lease_held);
  ERROR_OF(them->stop(), Errc::lease_held);
  ERROR_OF(them->cordon(), Errc::lease_held);
  ERROR_OF(them->destroy(true), Errc::lease_held);
  ERROR_OF(them->acquire_lease(60s, "mine"), Errc::lease_held);
  them->set_lease_nonce("0123456789abcdef0123456789abcdef");  // a wrong one is no better
  ERROR_OF(them->update(config(), {.skip_launch = true}), Errc::lease_held);
  ERROR_OF(them->release_lease(them->lease_nonce()), Errc::not_found);
  ASSERT_OK(them->set_metadata("k", "v"));  // metadata is not guarded (Fly)
  EXPECT_EQ(m->version(), 1u);

  // The holder, and anyone given its nonce, may.
  ASSERT_OK(m->update(config(), {.skip_launch = true}));
  them->set_lease_nonce(lease.nonce);
  ASSERT_OK(them->cordon());
  Lease refreshed = VALUE(m->acquire_lease(120s));
  EXPECT_EQ(refreshed.nonce, lease.nonce);
  EXPECT_NE(refreshed.version, lease.version);
  ASSERT_OK(m->release_lease(lease.nonce));
  EXPECT_EQ(m->lease_nonce(), "");
  ERROR_OF(m->lease(), Errc::not_found);
  them->set_lease_nonce("");
  ASSERT_OK(them->uncordon());

  // An expired lease is none.
  Lease brief = VALUE(m->acquire_lease(1s));
  std::this_thread::sleep_for(2100ms);
  ERROR_OF(them->lease(), Errc::not_found);
  ASSERT_OK(them->cordon());
  Lease theirs = VALUE(them->acquire_lease(60s));
  EXPECT_NE(theirs.nonce, brief.nonce);
  ERROR_OF(m->uncordon(), Errc::lease_held);  // m still sends the expired lease's nonce
  ASSERT_OK(them->destroy());
  EXPECT_EQ(m->state(), MachineState::destroyed);
}

TEST_F(MachineUpdate, AClonesConfigIsCopiedButNeverItsVolumes) {
  MachineConfig c = config();
  c.guest.cpus = 3;
  auto source = create(c, "src");
  ASSERT_TRUE(source);
  ASSERT_OK(source->set_metadata("zone", "b"));

  auto copy = VALUE(host_->clone(*source, {.name = "copy", .skip_launch = true}));
  EXPECT_NE(copy->id(), source->id());
  EXPECT_EQ(copy->name(), "copy");
  EXPECT_EQ(copy->app(), source->app());
  EXPECT_EQ(copy->config(), source->config());  // metadata too
  EXPECT_EQ(copy->state(), MachineState::created);
  EXPECT_NE(copy->instance_id(), source->instance_id());
  EXPECT_EQ(copy->version(), 1u);
  EXPECT_EQ(VALUE(host_->clone(*source, {.skip_launch = true}))->name().size(), 14u);  // named by its id
  ERROR_OF(host_->clone(*source, {.name = "copy", .skip_launch = true}), Errc::exists);

  // Volumes: the source's are refused; the clone may be given its own.
  Volume data = VALUE(host_->create_volume({"data", 1, {}}));
  Volume other = VALUE(host_->create_volume({"other", 1, {}}));
  c.mounts = {{data.id, "/data"}};
  auto with_volume = create(c, "vol");
  ASSERT_TRUE(with_volume);
  EXPECT_THAT(ERROR_OF(host_->clone(*with_volume, {.skip_launch = true}), Errc::invalid_argument).message,
              HasSubstr("volumes are not shared"));
  ERROR_OF(host_->clone(*with_volume, {.config = c, .skip_launch = true}), Errc::busy);  // data is in use
  MachineConfig own = c;
  own.mounts = {{"other", "/data"}};
  auto cloned = VALUE(host_->clone(*with_volume, {.config = own, .skip_launch = true}));
  EXPECT_EQ(cloned->config().mounts.at(0).volume, other.id);

  // Started unless skip_launch: this Host cannot, so the clone is not kept.
  const size_t before = VALUE(host_->list()).size();
  ERROR_OF(host_->clone(*source, {.name = "started"}), Errc::not_found);
  EXPECT_EQ(VALUE(host_->list()).size(), before);
}

TEST_F(MachineUpdate, UpdateMovesVolumesWithTheMounts) {
  Volume a = VALUE(host_->create_volume({"a", 1, {}}));
  Volume b = VALUE(host_->create_volume({"b", 1, {}}));
  MachineConfig c = config();
  c.mounts = {{"a", "/data"}};
  auto m = create(c);
  ASSERT_TRUE(m);
  auto attached = [&](const std::string& id) {
    for (const auto& v : VALUE(host_->list_volumes())) if (v.id == id) return v.attached_machine;
    return std::string("?");
  };
  EXPECT_EQ(attached(a.id), m->id());
  c.mounts = {{"b", "/data"}};
  ASSERT_OK(m->update(c, {.skip_launch = true}));
  EXPECT_EQ(attached(a.id), "");
  EXPECT_EQ(attached(b.id), m->id());
  EXPECT_EQ(m->config().mounts.at(0).volume, b.id);
  // Another machine's volume is refused.
  MachineConfig taker = config();
  taker.mounts = {{"a", "/x"}};
  auto t = create(taker);
  ASSERT_TRUE(t);
  c.mounts = {{"a", "/data"}};
  ERROR_OF(m->update(c, {.skip_launch = true}), Errc::busy);
  EXPECT_EQ(m->version(), 2u);
}

}  // namespace
