// The C ABI over Host, Image, Machine and Volume, where no machine boots: real stores in a
// scratch state directory, a busybox image built locally as an OCI layout, the test guest as
// the kernel (create needs one; nothing here starts it). Hostile use comes first: NULLs,
// stale handles, wrong options versions, bad configs, a machine destroyed behind a handle's
// back (through the C++ API and through a second host, as another process would). One test
// pulls from docker-registry on loopback to see the progress callback report and cancel.
#include <flick/flick.h>
#include <flick/machine.h>

#include "header_c11.h"
#include "support/command.h"
#include "support/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using flick::testing::run_command;
using flick::testing::TempDir;
using json = nlohmann::json;
using ::testing::HasSubstr;

// A library string as std::string, freed.
std::string take(char* s) {
  std::string out = s ? s : "";
  flick_free(s);
  return out;
}

std::string last_message() { return flick_error_last()->message; }

#define EXPECT_CODE(call, expected)                                      \
  do {                                                                   \
    const int rc_ = (call);                                              \
    EXPECT_EQ(rc_, expected) << #call << ": " << last_message();         \
    EXPECT_EQ(flick_error_last()->code, expected);                       \
  } while (0)
#define ASSERT_FLICK_OK(call) ASSERT_EQ((call), FLICK_OK) << #call << ": " << last_message()

class CapiMachine : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = run_command("python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py " + (dir_.path() / "layout").string());
    ASSERT_EQ(made.status, 0) << made.output;
    image_ = "oci:" + (dir_.path() / "layout").string() + ":latest";
    host_ = open_host();
    ASSERT_NE(host_, nullptr);
  }
  void TearDown() override {
    if (host_) {
      EXPECT_EQ(flick_host_close(host_), FLICK_OK) << last_message();
    }
  }

  // A host whose starts fail before a VM exists: no KVM device, no flick-vmm.
  flick_host* open_host() {
    state_ = (dir_.path() / "state").string();
    cache_ = (dir_.path() / "cache").string();
    run_ = (dir_.path() / "run").string();
    flick_host_options o = FLICK_HOST_OPTIONS_INIT;
    o.state_dir = state_.c_str();
    o.cache_dir = cache_.c_str();
    o.run_dir = run_.c_str();
    o.kernel = FLICK_TESTGUEST_PVH;
    o.kvm_device = "/nonexistent/kvm";
    o.vmm_program = "/nonexistent/flick-vmm";
    o.networking = FLICK_NETWORKING_NONE;
    flick_host* h = nullptr;
    EXPECT_EQ(flick_host_open(&h, &o), FLICK_OK) << last_message();
    return h;
  }

  // The same state directory through the C++ API: another process's view.
  std::unique_ptr<flick::Host> cpp_host() {
    flick::HostOptions o;
    o.state_dir = state_;
    o.cache_dir = cache_;
    o.run_dir = run_;
    o.kernel = FLICK_TESTGUEST_PVH;
    o.kvm_device = "/nonexistent/kvm";
    o.vmm_program = "/nonexistent/flick-vmm";
    o.network = flick::HostOptions::Networking::none;
    auto h = flick::Host::open(o);
    EXPECT_TRUE(h.ok()) << h.error().describe();
    return h.ok() ? std::move(h).value() : nullptr;
  }

  std::string config(const std::string& extra = "") const {
    return R"({"image": ")" + image_ + R"(", "init": {"cmd": ["sleep", "60"]}, "metadata": {"role": "web"})" + extra + "}";
  }

  flick_machine* create(const std::string& config_json, const char* name = nullptr, const char* app = nullptr) {
    flick_machine_create_options o = FLICK_MACHINE_CREATE_OPTIONS_INIT;
    o.config_json = config_json.c_str();
    o.name = name;
    o.app = app;
    o.skip_launch = 1;
    flick_machine* m = nullptr;
    EXPECT_EQ(flick_machine_create(&m, host_, &o), FLICK_OK) << last_message();
    return m;
  }

  static json get(flick_machine* m) {
    char* out = nullptr;
    EXPECT_EQ(flick_machine_get(&out, m), FLICK_OK) << last_message();
    return json::parse(take(out));
  }

  json list(const flick_machine_filter* f) {
    char* out = nullptr;
    EXPECT_EQ(flick_machine_list(&out, host_, f), FLICK_OK) << last_message();
    return json::parse(take(out));
  }

  static std::string id_of(flick_machine* m) {
    char* id = nullptr;
    EXPECT_EQ(flick_machine_id(&id, m), FLICK_OK) << last_message();
    return take(id);
  }

  TempDir dir_{"flick-capi"};
  std::string image_, state_, cache_, run_;
  flick_host* host_ = nullptr;
};

TEST(CapiHeader, CompilesAsC11AndItsInitMacrosMatchTheInitFunctions) {
  EXPECT_EQ(c11_options_match_init(), nullptr) << c11_options_match_init();
  EXPECT_EQ(c11_machine_states_named(), nullptr) << c11_machine_states_named();
}

TEST(CapiErrors, NullArgumentsAreRefusedByName) {
  EXPECT_CODE(flick_host_open(nullptr, nullptr), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("flick_host_open: out is NULL"));
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_INVALID_ARGUMENT);

  char* out = reinterpret_cast<char*>(1);
  EXPECT_CODE(flick_image_list(&out, nullptr), FLICK_EINVAL);
  EXPECT_EQ(out, nullptr);  // cleared on failure
  EXPECT_THAT(last_message(), HasSubstr("flick_image_list: host is NULL"));
  EXPECT_CODE(flick_machine_start(nullptr), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("machine is NULL"));
  EXPECT_CODE(flick_machine_get(nullptr, nullptr), FLICK_EINVAL);
  flick_machine_free(nullptr);
  flick_vm_free(nullptr);
  flick_free(nullptr);
  flick_exec_result_free(nullptr);

  // A success clears the last error.
  flick_pull_options p;
  EXPECT_CODE(flick_pull_options_init(&p, FLICK_PULL_OPTIONS_VERSION), FLICK_OK);
  EXPECT_STREQ(flick_error_last()->message, "");
  EXPECT_STREQ(flick_last_error(), "");
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_NONE);
}

TEST(CapiErrors, UnknownOptionsVersionsAreRefused) {
  flick_host_options o;
  EXPECT_CODE(flick_host_options_init(&o, 0), FLICK_EINVAL);
  EXPECT_CODE(flick_host_options_init(&o, FLICK_HOST_OPTIONS_VERSION + 1), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("version 2 is not one this library knows"));
  o = FLICK_HOST_OPTIONS_INIT;
  o.version = 77;
  flick_host* h = reinterpret_cast<flick_host*>(1);
  EXPECT_CODE(flick_host_open(&h, &o), FLICK_EINVAL);
  EXPECT_EQ(h, nullptr);
  EXPECT_THAT(last_message(), HasSubstr("flick_host_options version 77"));
  o.version = FLICK_HOST_OPTIONS_VERSION;
  o.networking = static_cast<flick_networking>(9);
  EXPECT_CODE(flick_host_open(&h, &o), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("networking 9"));
}

// A caller built against version 1 of flick_vm_options has a smaller struct: init and create
// must not touch a byte past it.
TEST(CapiErrors, VmOptionsVersion1IsReadAndWrittenWithinItsSize) {
  struct {
    flick_vm_options v1;  // only its first fields are version 1's
  } buf;
  const size_t v1_size = offsetof(flick_vm_options, disks);
  std::memset(&buf, 0x5a, sizeof buf);
  ASSERT_FLICK_OK(flick_vm_options_init(&buf.v1, 1));
  EXPECT_EQ(buf.v1.version, 1u);
  EXPECT_EQ(buf.v1.cpus, 1u);
  EXPECT_EQ(buf.v1.memory_mib, 256u);
  const auto* bytes = reinterpret_cast<const unsigned char*>(&buf);
  for (size_t i = v1_size; i < sizeof buf; ++i) ASSERT_EQ(bytes[i], 0x5a) << "byte " << i << " written";
  // Version 1 with garbage where version 2's fields would be: they are not read.
  flick_vm* vm = nullptr;
  EXPECT_CODE(flick_vm_create(&vm, &buf.v1), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("no kernel"));
  buf.v1.kernel = "/nonexistent/vmlinuz";
  EXPECT_CODE(flick_vm_create(&vm, &buf.v1), FLICK_ENOTFOUND);
  EXPECT_EQ(vm, nullptr);

  flick_vm_options v2 = FLICK_VM_OPTIONS_INIT;
  v2.kernel = "/nonexistent/vmlinuz";
  v2.disk_count = 1;
  EXPECT_CODE(flick_vm_create(&vm, &v2), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("disks or nics is NULL"));
  flick_vm_disk disk{};
  v2.disks = &disk;
  EXPECT_CODE(flick_vm_create(&vm, &v2), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("disks[0].path"));
}

TEST_F(CapiMachine, StaleAndForeignHandlesAreDetected) {
  flick_host* other = open_host();
  ASSERT_NE(other, nullptr);
  ASSERT_FLICK_OK(flick_host_close(other));
  EXPECT_CODE(flick_host_close(other), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("flick_host_close: host handle was already freed"));
  char* out = nullptr;
  EXPECT_CODE(flick_image_list(&out, other), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("already freed"));

  // The slot is used again with a new generation: the old token stays stale.
  flick_host* again = open_host();
  ASSERT_NE(again, nullptr);
  EXPECT_NE(again, other);
  EXPECT_CODE(flick_image_list(&out, other), FLICK_EINVAL);
  ASSERT_FLICK_OK(flick_image_list(&out, again));
  flick_free(out);
  ASSERT_FLICK_OK(flick_host_close(again));

  flick_machine* m = create(config());
  ASSERT_NE(m, nullptr);
  // A host token is not a machine, nor is a made-up number.
  EXPECT_CODE(flick_machine_start(reinterpret_cast<flick_machine*>(host_)), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("is not a machine handle"));
  EXPECT_CODE(flick_machine_start(reinterpret_cast<flick_machine*>(uintptr_t{0x1234})), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("is not a machine handle"));
  flick_machine_free(m);
  EXPECT_CODE(flick_machine_get(&out, m), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("flick_machine_get: machine handle was already freed"));
  flick_machine_free(m);  // a second free is refused, and says so
  EXPECT_EQ(flick_error_last()->code, FLICK_EINVAL);
}

TEST_F(CapiMachine, ConfigsThatDoNotParseOrValidateNameTheField) {
  flick_machine_create_options o = FLICK_MACHINE_CREATE_OPTIONS_INIT;
  flick_machine* m = nullptr;
  EXPECT_CODE(flick_machine_create(&m, host_, &o), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("config_json is NULL"));

  const std::string unknown = config(R"(, "guest": {"cpuz": 2})");
  o.config_json = unknown.c_str();
  EXPECT_CODE(flick_machine_create(&m, host_, &o), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("guest.cpuz"));
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_INVALID_ARGUMENT);

  const std::string invalid = config(R"(, "guest": {"cpus": 0})");
  o.config_json = invalid.c_str();
  EXPECT_CODE(flick_machine_create(&m, host_, &o), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("guest.cpus"));

  o.config_json = R"({"image": )";
  EXPECT_CODE(flick_machine_create(&m, host_, &o), FLICK_EMALFORMED);
  EXPECT_EQ(m, nullptr);

  const std::string good = config();
  o.config_json = good.c_str();
  o.region = "ams";
  EXPECT_CODE(flick_machine_create(&m, host_, &o), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("region"));

  // Nothing was made by any of them.
  EXPECT_EQ(list(nullptr).size(), 0u);
}

TEST_F(CapiMachine, ImagesPullListRootfsAndRemove) {
  char* out = nullptr;
  EXPECT_CODE(flick_image_pull(&out, host_, "", nullptr), FLICK_EINVAL);
  int calls = 0;
  flick_pull_options p = FLICK_PULL_OPTIONS_INIT;
  p.progress = [](void* ud, uint64_t, uint64_t) { return ++*static_cast<int*>(ud), 0; };
  p.progress_userdata = &calls;
  ASSERT_FLICK_OK(flick_image_pull(&out, host_, image_.c_str(), &p));
  auto pulled = json::parse(take(out));
  EXPECT_EQ(pulled["reference"], image_);
  EXPECT_THAT(pulled["image_digest"].get<std::string>(), ::testing::StartsWith("sha256:"));
  EXPECT_GT(pulled["blob_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(pulled["config"]["env"].is_array());
  EXPECT_EQ(calls, 0);  // a local layout does not report progress

  ASSERT_FLICK_OK(flick_image_rootfs(&out, host_, image_.c_str(), nullptr));
  const std::string rootfs = take(out);
  EXPECT_TRUE(std::filesystem::is_regular_file(rootfs)) << rootfs;

  ASSERT_FLICK_OK(flick_image_list(&out, host_));
  auto images = json::parse(take(out));
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0]["image_digest"], pulled["image_digest"]);
  EXPECT_EQ(images[0]["rootfs"][0], rootfs);

  p.policy = FLICK_PULL_NEVER;
  const std::string absent = "oci:" + (dir_.path() / "nowhere").string() + ":latest";
  EXPECT_NE(flick_image_pull(&out, host_, absent.c_str(), &p), FLICK_OK);

  uint64_t files = 0, bytes = 0;
  ASSERT_FLICK_OK(flick_image_rm(&files, &bytes, host_, image_.c_str()));
  EXPECT_GT(files, 0u);
  EXPECT_GT(bytes, 0u);
  EXPECT_FALSE(std::filesystem::exists(rootfs));
  EXPECT_CODE(flick_image_rm(nullptr, nullptr, host_, image_.c_str()), FLICK_ENOTFOUND);
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_IMAGE);
  ASSERT_FLICK_OK(flick_image_prune(&files, nullptr, host_));
}

// A registry pull reports progress through the callback, on the calling thread, and a
// nonzero return stops it: FLICK_ECANCELLED, and a later pull still works.
TEST_F(CapiMachine, APullsProgressCallbackReportsAndCanStopIt) {
  const std::string d = dir_.path().string();
  auto port = run_command("python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); "
                          "print(s.getsockname()[1])'");
  ASSERT_EQ(port.status, 0) << port.output;
  const std::string registry = "127.0.0.1:" + port.output.substr(0, port.output.find('\n'));
  std::ofstream(d + "/registry.yml") << "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                     << "    rootdirectory: " << d << "/registry\nhttp:\n  addr: " << registry << "\n";
  ASSERT_EQ(run_command("cd '" + d + "' && (docker-registry serve registry.yml > registry.log 2>&1 & echo $! > registry.pid)").status, 0);
  struct Stop {
    std::string d;
    ~Stop() { run_command("kill $(cat '" + d + "/registry.pid')"); }
  } stop{d};
  auto pushed = run_command("for i in $(seq 100); do skopeo copy -q --dest-tls-verify=false '" + image_ +
                            "' docker://" + registry + "/busybox:latest && exit 0; sleep 0.1; done; exit 1");
  ASSERT_EQ(pushed.status, 0) << pushed.output;

  const std::string insecure_name = registry;
  const char* insecure[] = {insecure_name.c_str(), nullptr};
  flick_host_options o = FLICK_HOST_OPTIONS_INIT;
  const std::string cache = d + "/pull-cache", state = d + "/pull-state";
  o.cache_dir = cache.c_str();
  o.state_dir = state.c_str();
  o.networking = FLICK_NETWORKING_NONE;
  o.insecure_registries = insecure;
  flick_host* h = nullptr;
  ASSERT_FLICK_OK(flick_host_open(&h, &o));

  struct Seen {
    int calls = 0;
    int stop_with = 0;
    uint64_t total = 0;
    std::thread::id thread;
  } seen;
  flick_pull_options p = FLICK_PULL_OPTIONS_INIT;
  p.progress = [](void* ud, uint64_t, uint64_t total) {
    auto* s = static_cast<Seen*>(ud);
    ++s->calls;
    s->total = total;
    s->thread = std::this_thread::get_id();
    return s->stop_with;
  };
  p.progress_userdata = &seen;
  const std::string ref = registry + "/busybox:latest";
  char* out = nullptr;
  seen.stop_with = 7;
  EXPECT_CODE(flick_image_pull(&out, h, ref.c_str(), &p), FLICK_ECANCELLED);
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_CALLBACK);
  EXPECT_THAT(last_message(), HasSubstr("progress callback returned 7"));
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(seen.calls, 1);

  seen = Seen{};
  ASSERT_FLICK_OK(flick_image_pull(&out, h, ref.c_str(), &p));
  EXPECT_THAT(json::parse(take(out))["image_digest"].get<std::string>(), ::testing::StartsWith("sha256:"));
  EXPECT_GE(seen.calls, 1);
  EXPECT_GT(seen.total, 0u);
  EXPECT_EQ(seen.thread, std::this_thread::get_id());
  ASSERT_FLICK_OK(flick_host_close(h));
}

TEST_F(CapiMachine, CreateGetListUpdateAndDestroyWithoutStarting) {
  flick_machine* m = create(config(), "web-1");
  ASSERT_NE(m, nullptr);
  auto j = get(m);
  const std::string id = id_of(m);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["name"], "web-1");
  EXPECT_EQ(j["app"], "default");
  EXPECT_EQ(j["state"], "created");
  EXPECT_EQ(j["region"], "local");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["cordoned"], false);
  EXPECT_EQ(j["events"][0]["type"], "launch");
  // The config is the one given, as flickd writes it back (Fly's JSON, defaults filled in).
  auto given = flick::MachineConfig::from_json(config());
  ASSERT_TRUE(given.ok());
  EXPECT_EQ(j["config"], json::parse(given->to_json()));
  EXPECT_EQ(j["image_ref"]["digest"].get<std::string>().substr(0, 7), "sha256:");
  flick_machine_state st;
  ASSERT_FLICK_OK(flick_machine_get_state(&st, m));
  EXPECT_EQ(st, FLICK_MACHINE_CREATED);

  // Found again by name; a second machine in another app.
  flick_machine* again = nullptr;
  ASSERT_FLICK_OK(flick_machine_open(&again, host_, "web-1", nullptr));
  EXPECT_EQ(id_of(again), id);
  flick_machine_free(again);
  EXPECT_CODE(flick_machine_open(&again, host_, "web-2", nullptr), FLICK_ENOTFOUND);
  char* out = nullptr;
  ASSERT_FLICK_OK(flick_app_create(&out, host_, "shop", nullptr));
  EXPECT_EQ(json::parse(take(out))["name"], "shop");
  flick_machine* other = create(config(R"(, "env": {"X": "1"})").replace(config().find("web"), 3, "db"), nullptr, "shop");
  ASSERT_NE(other, nullptr);

  // Filters: app, metadata, state.
  EXPECT_EQ(list(nullptr).size(), 2u);
  flick_machine_filter f = FLICK_MACHINE_FILTER_INIT;
  f.app = "shop";
  auto shop = list(&f);
  ASSERT_EQ(shop.size(), 1u);
  EXPECT_EQ(shop[0]["id"], id_of(other));
  f.app = nullptr;
  const char* web[] = {"role", "web", nullptr};
  f.metadata = web;
  auto webs = list(&f);
  ASSERT_EQ(webs.size(), 1u);
  EXPECT_EQ(webs[0]["id"], id);
  f.metadata = nullptr;
  const flick_machine_state stopped[] = {FLICK_MACHINE_STOPPED};
  f.states = stopped;
  f.state_count = 1;
  EXPECT_EQ(list(&f).size(), 0u);
  const flick_machine_state bogus[] = {static_cast<flick_machine_state>(12)};
  f.states = bogus;
  EXPECT_CODE(flick_machine_list(&out, host_, &f), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("states[0]"));

  // Update: a new version with the new config, left created.
  const std::string next = config(R"(, "guest": {"cpus": 2, "memory_mb": 128})");
  flick_machine_update_options u = FLICK_MACHINE_UPDATE_OPTIONS_INIT;
  u.config_json = next.c_str();
  u.skip_launch = 1;
  ASSERT_FLICK_OK(flick_machine_update(m, &u));
  j = get(m);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["config"]["guest"]["cpus"], 2);
  EXPECT_EQ(j["state"], "created");
  u.current_version = 1;
  EXPECT_CODE(flick_machine_update(m, &u), FLICK_EBUSY);
  u.current_version = 0;
  const std::string bad = config(R"(, "restart": {"policy": "sometimes"})");
  u.config_json = bad.c_str();
  EXPECT_CODE(flick_machine_update(m, &u), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("restart.policy"));

  // Events, logs (none: it never ran), exec (not started).
  ASSERT_FLICK_OK(flick_machine_events(&out, m));
  auto events = json::parse(take(out));
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0]["type"], "update");  // newest first
  size_t len = 99;
  ASSERT_FLICK_OK(flick_machine_logs(&out, &len, m));
  EXPECT_EQ(take(out), "");
  EXPECT_EQ(len, 0u);
  flick_exec_result r;
  flick_exec_options e = FLICK_EXEC_OPTIONS_INIT;
  EXPECT_CODE(flick_machine_exec(&r, m, &e), FLICK_EINVAL);
  EXPECT_THAT(last_message(), HasSubstr("argv"));
  const char* argv[] = {"true", nullptr};
  e.argv = argv;
  EXPECT_CODE(flick_machine_exec(&r, m, &e), FLICK_EBUSY);
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_MACHINE);
  EXPECT_EQ(r.stdout_data, nullptr);

  // A start that cannot happen here (no KVM device, no flick-vmm) fails with a reason and
  // leaves the machine as it was.
  EXPECT_NE(flick_machine_start(m), FLICK_OK);
  EXPECT_STRNE(flick_last_error(), "");
  ASSERT_FLICK_OK(flick_machine_get_state(&st, m));
  EXPECT_NE(st, FLICK_MACHINE_STARTED);

  // Clone, left created.
  flick_machine_clone_options c = FLICK_MACHINE_CLONE_OPTIONS_INIT;
  c.name = "web-copy";
  c.skip_launch = 1;
  flick_machine* copy = nullptr;
  ASSERT_FLICK_OK(flick_machine_clone(&copy, host_, m, &c));
  auto cj = get(copy);
  EXPECT_EQ(cj["name"], "web-copy");
  EXPECT_NE(cj["id"], id);
  EXPECT_EQ(cj["config"]["guest"]["cpus"], 2);

  // Destroy: gone from the list, but there with include_deleted; the handle says so.
  ASSERT_FLICK_OK(flick_machine_destroy(m, 0));
  ASSERT_FLICK_OK(flick_machine_wait(m, FLICK_MACHINE_DESTROYED, 1000));
  ASSERT_FLICK_OK(flick_machine_destroy(m, 0));  // again: nothing to do
  EXPECT_CODE(flick_machine_get(&out, m), FLICK_ENOTFOUND);
  EXPECT_THAT(last_message(), HasSubstr("machine " + id + " was destroyed"));
  f = FLICK_MACHINE_FILTER_INIT;
  EXPECT_EQ(list(&f).size(), 2u);
  f.include_deleted = 1;
  EXPECT_EQ(list(&f).size(), 3u);
  flick_machine_free(m);
  flick_machine_free(other);
  flick_machine_free(copy);
}

TEST_F(CapiMachine, MetadataLeasesAndCordon) {
  flick_machine* m = create(config());
  ASSERT_NE(m, nullptr);
  char* out = nullptr;
  ASSERT_FLICK_OK(flick_machine_metadata_set(m, "tier", "gold"));
  ASSERT_FLICK_OK(flick_machine_metadata_get(&out, m, "tier"));
  EXPECT_EQ(take(out), "gold");
  ASSERT_FLICK_OK(flick_machine_metadata(&out, m));
  EXPECT_EQ(json::parse(take(out)), (json{{"role", "web"}, {"tier", "gold"}}));
  ASSERT_FLICK_OK(flick_machine_metadata_delete(m, "tier"));
  EXPECT_CODE(flick_machine_metadata_get(&out, m, "tier"), FLICK_ENOTFOUND);
  EXPECT_THAT(last_message(), HasSubstr("no metadata key 'tier'"));
  EXPECT_CODE(flick_machine_metadata_set(m, "bad key!", "x"), FLICK_EINVAL);
  EXPECT_CODE(flick_machine_metadata_set(m, "k", nullptr), FLICK_EINVAL);

  EXPECT_CODE(flick_machine_lease_get(&out, m), FLICK_ENOTFOUND);
  EXPECT_CODE(flick_machine_lease_acquire(&out, m, 0, nullptr), FLICK_EINVAL);
  ASSERT_FLICK_OK(flick_machine_lease_acquire(&out, m, 60, "deploy"));
  auto lease = json::parse(take(out));
  const std::string nonce = lease["nonce"];
  EXPECT_EQ(nonce.size(), 32u);
  EXPECT_EQ(lease["description"], "deploy");
  ASSERT_FLICK_OK(flick_machine_lease_get(&out, m));
  EXPECT_EQ(json::parse(take(out))["nonce"], nonce);

  // Another handle (as another process would have) is held back until it carries the nonce.
  flick_machine* other = nullptr;
  ASSERT_FLICK_OK(flick_machine_open(&other, host_, id_of(m).c_str(), nullptr));
  EXPECT_CODE(flick_machine_cordon(other), FLICK_ELEASE);
  EXPECT_THAT(last_message(), HasSubstr("lease currently held"));
  ASSERT_FLICK_OK(flick_machine_cordon(m));  // the holder may
  EXPECT_EQ(get(m)["cordoned"], true);
  ASSERT_FLICK_OK(flick_machine_set_lease_nonce(other, nonce.c_str()));
  ASSERT_FLICK_OK(flick_machine_uncordon(other));
  EXPECT_EQ(get(m)["cordoned"], false);
  EXPECT_NE(flick_machine_lease_release(m, "00000000000000000000000000000000"), FLICK_OK);
  ASSERT_FLICK_OK(flick_machine_lease_release(m, nonce.c_str()));
  ASSERT_FLICK_OK(flick_machine_set_lease_nonce(other, nullptr));
  ASSERT_FLICK_OK(flick_machine_cordon(other));
  flick_machine_free(other);
  flick_machine_free(m);
}

TEST_F(CapiMachine, AMachineDestroyedElsewhereIsNotFoundNotACrash) {
  flick_machine* m = create(config());
  ASSERT_NE(m, nullptr);
  const std::string id = id_of(m);
  {  // Through the C++ API, as another process would.
    auto other = cpp_host();
    ASSERT_NE(other, nullptr);
    auto cm = other->get(id);
    ASSERT_TRUE(cm.ok()) << cm.error().describe();
    ASSERT_TRUE((*cm)->destroy().ok());
  }
  char* out = nullptr;
  EXPECT_CODE(flick_machine_get(&out, m), FLICK_ENOTFOUND);
  EXPECT_THAT(last_message(), HasSubstr("machine " + id + " was destroyed"));
  EXPECT_CODE(flick_machine_start(m), FLICK_ENOTFOUND);
  EXPECT_CODE(flick_machine_metadata_set(m, "a", "b"), FLICK_ENOTFOUND);
  flick_machine_update_options u = FLICK_MACHINE_UPDATE_OPTIONS_INIT;
  const std::string c = config();
  u.config_json = c.c_str();
  EXPECT_CODE(flick_machine_update(m, &u), FLICK_ENOTFOUND);
  flick_machine_state st;
  ASSERT_FLICK_OK(flick_machine_get_state(&st, m));
  EXPECT_EQ(st, FLICK_MACHINE_DESTROYED);
  ASSERT_FLICK_OK(flick_machine_events(&out, m));
  EXPECT_EQ(json::parse(take(out))[0]["type"], "destroy");
  flick_machine_free(m);

  // Through a second C host, while this one's handle is open; the first host then closes
  // before the handle is freed, which stays usable.
  m = create(config());
  ASSERT_NE(m, nullptr);
  flick_host* second = open_host();
  flick_machine* there = nullptr;
  ASSERT_FLICK_OK(flick_machine_open(&there, second, id_of(m).c_str(), nullptr));
  ASSERT_FLICK_OK(flick_host_close(second));
  ASSERT_FLICK_OK(flick_machine_destroy(there, 1));
  flick_machine_free(there);
  EXPECT_CODE(flick_machine_cordon(m), FLICK_ENOTFOUND);
  EXPECT_CODE(flick_machine_wait(m, FLICK_MACHINE_STARTED, 100), FLICK_ENOTFOUND);
  flick_machine_free(m);
}

TEST_F(CapiMachine, FreeingAHandleWhileOtherThreadsUseItIsSafe) {
  flick_machine* m = create(config());
  ASSERT_NE(m, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, stale{0}, other{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        char* out = nullptr;
        const int rc = flick_machine_metadata(&out, m);
        flick_free(out);
        (rc == FLICK_OK ? ok : rc == FLICK_EINVAL ? stale : other)++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  flick_machine_free(m);
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + stale, 200);
  char* out = nullptr;
  EXPECT_CODE(flick_machine_metadata(&out, m), FLICK_EINVAL);
}

TEST_F(CapiMachine, VolumesAndApps) {
  char* out = nullptr;
  EXPECT_CODE(flick_volume_create(&out, host_, nullptr, nullptr, 1), FLICK_EINVAL);
  EXPECT_CODE(flick_volume_create(&out, host_, "Bad Name", nullptr, 1), FLICK_EINVAL);
  ASSERT_FLICK_OK(flick_volume_create(&out, host_, "data", nullptr, 1));
  auto v = json::parse(take(out));
  EXPECT_EQ(v["name"], "data");
  EXPECT_EQ(v["size_gb"], 1);
  EXPECT_EQ(v["app"], "default");
  EXPECT_TRUE(v["attached_machine_id"].is_null());
  EXPECT_TRUE(std::filesystem::exists(v["path"].get<std::string>()));
  const std::string id = v["id"];

  ASSERT_FLICK_OK(flick_volume_extend(&out, host_, "data", nullptr, 3));
  EXPECT_EQ(json::parse(take(out))["size_gb"], 3);
  EXPECT_CODE(flick_volume_extend(&out, host_, id.c_str(), nullptr, 2), FLICK_EINVAL);

  ASSERT_FLICK_OK(flick_app_create(&out, host_, "shop", "acme"));
  flick_free(out);
  EXPECT_CODE(flick_app_create(&out, host_, "shop", nullptr), FLICK_EEXISTS);
  ASSERT_FLICK_OK(flick_volume_create(&out, host_, "data", "shop", 1));
  flick_free(out);
  ASSERT_FLICK_OK(flick_volume_list(&out, host_, nullptr));
  EXPECT_EQ(json::parse(take(out)).size(), 2u);
  ASSERT_FLICK_OK(flick_volume_list(&out, host_, "shop"));
  EXPECT_EQ(json::parse(take(out)).size(), 1u);

  ASSERT_FLICK_OK(flick_app_list(&out, host_));
  auto apps = json::parse(take(out));
  ASSERT_EQ(apps.size(), 2u);
  EXPECT_EQ(apps[1]["organization"]["slug"], "acme");
  EXPECT_EQ(apps[1]["volume_count"], 1);
  EXPECT_CODE(flick_app_destroy(host_, "shop", 0), FLICK_EBUSY);
  ASSERT_FLICK_OK(flick_app_destroy(host_, "shop", 1));

  ASSERT_FLICK_OK(flick_volume_destroy(host_, id.c_str(), nullptr));
  EXPECT_CODE(flick_volume_destroy(host_, "vol_0000000000000000", nullptr), FLICK_ENOTFOUND);
  EXPECT_EQ(flick_error_last()->error_class, FLICK_ERROR_STORE);
  ASSERT_FLICK_OK(flick_volume_list(&out, host_, nullptr));
  EXPECT_EQ(json::parse(take(out)).size(), 0u);
}

}  // namespace
