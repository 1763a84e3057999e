// The machine layer's pure parts: config validation, the image/machine merge, flick-init's
// config (checked by flick-init's own parser), guest events, volumes.
#include <flick/machine.h>

#include "runner/guest_channel.h"
#include "runner/host_network.h"
#include "machine/init_config.h"
#include "machine/volume.h"
#include "support/command.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>

#include <string>

namespace {

using namespace flick;
using namespace flick::machine;
using namespace flick::runner;
namespace fs = std::filesystem;
using flick::testing::run_command;
using flick::testing::TempDir;
using flick::testing::write_file;

MachineConfig good() {
  MachineConfig c;
  c.image = "oci:/images/busybox:latest";
  c.mounts = {{"data", "/data"}};
  return c;
}

// The error's message names `field`.
void expect_invalid(const MachineConfig& c, const std::string& field) {
  auto r = c.validate();
  ASSERT_FALSE(r.ok()) << "expected " << field << " to be rejected";
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
}

TEST(MachineConfig, ValidatesEveryField) {
  EXPECT_TRUE(good().validate().ok());
  auto c = good();
  c.image = "";
  expect_invalid(c, "image");
  c = good();
  c.image = "UPPER/case";
  expect_invalid(c, "image");
  c = good();
  c.guest.cpus = 0;
  expect_invalid(c, "guest.cpus");
  c = good();
  c.guest.cpus = 255;
  expect_invalid(c, "guest.cpus");
  c = good();
  c.guest.memory_mb = 32;
  expect_invalid(c, "guest.memory_mb");
  c = good();
  c.guest.kernel_modules = "/lib/modules/x";
  expect_invalid(c, "guest.kernel_modules");
  c = good();
  c.env["A=B"] = "x";
  expect_invalid(c, "env");
  c = good();
  c.env[""] = "x";
  expect_invalid(c, "env");
  c = good();
  c.init.exec = {"/bin/true"};
  c.init.cmd = {"x"};
  expect_invalid(c, "init.exec");
  c = good();
  c.init.cmd = {std::string("a\0b", 3)};
  expect_invalid(c, "init.cmd[0]");
  c = good();
  c.init.workdir = "relative";
  expect_invalid(c, "init.workdir");
  c = good();
  c.mounts = {{"data", "/"}};
  expect_invalid(c, "mounts[0].path");
  c = good();
  c.mounts = {{"data", "/a/../b"}};
  expect_invalid(c, "mounts[0].path");
  c = good();
  c.mounts = {{"Data", "/data"}};
  expect_invalid(c, "mounts[0].volume");
  c = good();
  c.mounts = {{"a", "/data"}, {"a", "/other"}};
  expect_invalid(c, "mounts[1].volume");
  c = good();
  c.mounts = {{"a", "/data"}, {"b", "/data"}};
  expect_invalid(c, "mounts[1].path");
  c = good();
  c.restart.max_retries = 5000;
  expect_invalid(c, "restart.max_retries");
  c = good();
  c.stop_config.signal = 0;
  expect_invalid(c, "stop_config.signal");
  c = good();
  c.stop_config.timeout = std::chrono::milliseconds(-1);
  expect_invalid(c, "stop_config.timeout");
  c = good();
  c.start_timeout = std::chrono::milliseconds(0);
  expect_invalid(c, "start_timeout");
  c = good();
  c.guest.cpu_kind = "fast";
  expect_invalid(c, "guest.cpu_kind");
  c = good();
  c.init.kernel_args = {"a\nb"};
  expect_invalid(c, "init.kernel_args");
}

// The fields kept as JSON text hold JSON, and only the Fly fields flick keeps.
TEST(MachineConfig, ValidatesTheFieldsKeptAsJson) {
  auto c = good();
  c.guest.cpu_kind = "performance";
  c.services_json = R"([{"protocol":"tcp","internal_port":8080}])";
  c.unimplemented = {{"checks", "{}"}, {"guest.gpus", "1"}, {"mounts[0].size_gb", "3"}};
  EXPECT_TRUE(c.validate().ok()) << c.validate().error().message;
  auto back = MachineConfig::from_json(c.to_json());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, c);
  c = good();
  c.services_json = R"({"protocol":"tcp"})";
  expect_invalid(c, "services");
  c = good();
  c.services_json = "[";
  expect_invalid(c, "services");
  c = good();
  c.services_json = R"([{"protocol":"tcp","internal_port":8080,"ports":[{"port":70000}]}])";
  expect_invalid(c, "services[0].ports[0].port");
  for (const char* key : {"foo", "guest.cpus", "guest.checks", "mounts[1].size_gb", "mounts[0].volume",
                          "mounts[00].size_gb", "mounts[].size_gb"}) {
    c = good();
    c.unimplemented = {{key, "1"}};
    expect_invalid(c, key);
  }
  c = good();
  c.unimplemented = {{"checks", "{"}};
  expect_invalid(c, "checks");
}

ImageConfig image_config() {
  ImageConfig i;
  i.entrypoint = {"/entry"};
  i.cmd = {"--serve"};
  i.env = {"PATH=/bin", "FOO=image", "KEEP=1"};
  i.working_dir = "/srv";
  i.user = "app";
  return i;
}

TEST(ResolveProcess, TheImageConfigWhenTheMachineSaysNothing) {
  auto p = resolve_process(good(), image_config());
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->argv, (std::vector<std::string>{"/entry", "--serve"}));
  EXPECT_EQ(p->env, (std::vector<std::string>{"PATH=/bin", "FOO=image", "KEEP=1"}));
  EXPECT_EQ(p->cwd, "/srv");
  EXPECT_EQ(p->user, "app");
}

TEST(ResolveProcess, MachineOverridesAsContainerRuntimesApplyThem) {
  auto c = good();
  c.init.cmd = {"--debug"};
  c.env = {{"FOO", "machine"}, {"NEW", "x"}};
  c.init.workdir = "/tmp";
  c.init.user = "1000:100";
  auto p = resolve_process(c, image_config());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->argv, (std::vector<std::string>{"/entry", "--debug"}));  // cmd replaced, entrypoint kept
  EXPECT_EQ(p->env, (std::vector<std::string>{"PATH=/bin", "FOO=machine", "KEEP=1", "NEW=x"}));
  EXPECT_EQ(p->cwd, "/tmp");
  EXPECT_EQ(p->user, "1000:100");

  c = good();
  c.init.entrypoint = {"/bin/sh", "-c"};  // a new entrypoint drops the image's Cmd
  p = resolve_process(c, image_config());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->argv, (std::vector<std::string>{"/bin/sh", "-c"}));

  c = good();
  c.init.exec = {"/bin/true"};
  p = resolve_process(c, image_config());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->argv, (std::vector<std::string>{"/bin/true"}));
}

TEST(ResolveProcess, DefaultsAndNothingToRun) {
  ImageConfig bare;
  bare.cmd = {"sh"};
  auto p = resolve_process(good(), bare);
  ASSERT_TRUE(p.ok());
  ASSERT_FALSE(p->env.empty());
  EXPECT_EQ(p->env[0].rfind("PATH=/usr/local/sbin:", 0), 0u);
  EXPECT_EQ(p->cwd, "/");
  EXPECT_EQ(p->user, "");

  auto none = resolve_process(good(), ImageConfig{});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no Entrypoint or Cmd"), std::string::npos);
}

TEST(InitConfig, FlickInitAcceptsWhatTheHostWrites) {
  ProcessSpec p;
  p.argv = {"/bin/sh", "-c", "echo \"quoted\" \\ back"};
  p.env = {"PATH=/bin", "UNICODE=\xc3\xa9"};
  p.cwd = "/srv";
  p.user = "app:users";
  StopConfig stop{15, std::chrono::milliseconds(2500)};
  MachineNetwork net{"flk3f2a9c0d1e2b", "172.19.0.5", "172.19.0.6", 30};
  std::string json =
      init_config_json("3f2a9c0d1e2b4a", p, {{"/dev/vdb", "/data"}, {"/dev/vdc", "/logs"}}, stop, net);

  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["root"]["device"], "/dev/vda");
  EXPECT_EQ(j["mounts"][1]["device"], "/dev/vdc");
  EXPECT_EQ(j["mounts"][1]["path"], "/logs");
  EXPECT_EQ(j["process"]["argv"][2], p.argv[2]);
  EXPECT_EQ(j["stop"]["signal"], 15);
  EXPECT_EQ(j["stop"]["timeout_ms"], 2500);
  EXPECT_EQ(j["vsock"]["port"], kEventPort);
  EXPECT_EQ(j["network"]["address"], "172.19.0.6/30");
  EXPECT_EQ(j["network"]["gateway"], "172.19.0.5");
  EXPECT_EQ(j["hosts"][0]["names"][0], "host.flick.internal");

  // flick-init's strict parser (unknown members are errors) must take it as it is.
  TempDir t;
  write_file(t.path() / "config.json", json);
  auto r = run_command(std::string(FLICK_INIT_UNIT_TEST) + " check-config " + (t.path() / "config.json").string());
  EXPECT_EQ(r.status, 0) << r.output;
  write_file(t.path() / "typo.json", json.substr(0, json.size() - 1) + ",\"hostnme\":\"x\"}");
  r = run_command(std::string(FLICK_INIT_UNIT_TEST) + " check-config " + (t.path() / "typo.json").string());
  EXPECT_EQ(r.status, 1) << r.output;  // the check itself can fail
}

TEST(InitConfig, DiskNamesFollowLinux) {
  EXPECT_EQ(virtio_disk_name(0), "/dev/vda");
  EXPECT_EQ(virtio_disk_name(25), "/dev/vdz");
  EXPECT_EQ(virtio_disk_name(26), "/dev/vdaa");
  EXPECT_EQ(virtio_disk_name(27), "/dev/vdab");
  EXPECT_EQ(virtio_disk_name(52), "/dev/vdba");
}

TEST(GuestEvents, ParsesTheProtocol) {
  auto e = parse_guest_event(R"({"event":"started","pid":42})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, GuestEvent::Kind::started);
  EXPECT_EQ(e->pid, 42);
  e = parse_guest_event(R"({"event":"exited","exit_code":3})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, GuestEvent::Kind::exited);
  EXPECT_EQ(e->exit_code, 3);
  e = parse_guest_event(R"({"event":"exited","signal":9})");
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->exit_code);
  EXPECT_EQ(e->signal, 9);
  e = parse_guest_event(R"({"event":"error","message":"exec /app: No such file or directory","exit_code":127})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, GuestEvent::Kind::error);
  EXPECT_EQ(e->exit_code, 127);
  EXPECT_EQ(e->message, "exec /app: No such file or directory");
  e = parse_guest_event(R"({"event":"oom"})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, GuestEvent::Kind::oom);

  for (const char* bad : {"", "not json", "[1]", R"({"event":1})", R"({"event":"exploded"})",
                          R"({"event":"exited"})", R"({"pid":1})"}) {
    auto r = parse_guest_event(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::malformed);
  }
}

TEST(GuestEvents, LinesAcrossReadsAndBoundedLength) {
  LineSplitter s(8);
  EXPECT_TRUE(s.feed("abc").empty());
  EXPECT_EQ(s.feed("def\ngh\n\nij"), (std::vector<std::string>{"abcdef", "gh", ""}));
  EXPECT_EQ(s.feed("\n"), (std::vector<std::string>{"ij"}));
  EXPECT_EQ(s.feed("0123456789\n"), (std::vector<std::string>{"01234567", "89"}));
}

TEST(GuestEvents, SocketPathsThatDoNotFitAreRefused) {
  auto r = listen_unix("/tmp/" + std::string(120, 'x'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("shorter run directory"), std::string::npos);
}

TEST(Volumes, FilesAreCheckedExt4AndNeverOverwritten) {
  TempDir t;
  fs::path path = t.path() / "vols" / "vol_x.ext4";
  auto made = make_volume_file(path, 1);
  ASSERT_TRUE(made.ok()) << made.error().describe();
  EXPECT_EQ(fs::file_size(path), uint64_t{1} << 30);
  auto fsck = run_command("e2fsck -fn " + path.string());
  EXPECT_EQ(fsck.status, 0) << fsck.output;

  auto again = make_volume_file(path, 1);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::exists);
  EXPECT_EQ(std::distance(fs::directory_iterator(path.parent_path()), fs::directory_iterator()), 1);
  EXPECT_EQ(make_volume_file(t.path() / "big.ext4", 0).error().code, Errc::invalid_argument);

  for (const char* bad : {"", "UPPER", "a-b", "../x", "0123456789012345678901234567890"}) {
    auto r = check_volume_name(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
  EXPECT_TRUE(check_volume_name("data_1").ok());
}

TEST(HostOptions, TheDefaultKernelComesFromTheEnvironmentWhenNotGiven) {
  TempDir t;
  HostOptions o;
  o.state_dir = t.path() / "state";
  o.cache_dir = t.path() / "cache";
  o.run_dir = t.path() / "run";
  ::setenv("FLICK_KERNEL", "/k/vmlinuz", 1);
  ::setenv("FLICK_KERNEL_MODULES", "/k/modules", 1);
  auto from_env = Host::open(o);
  o.kernel = "/given";
  auto given = Host::open(o);
  ::unsetenv("FLICK_KERNEL");
  ::unsetenv("FLICK_KERNEL_MODULES");
  ASSERT_TRUE(from_env.ok()) << from_env.error().describe();
  EXPECT_EQ((*from_env)->options().kernel, "/k/vmlinuz");
  EXPECT_EQ((*from_env)->options().kernel_modules, "/k/modules");
  ASSERT_TRUE(given.ok());
  EXPECT_EQ((*given)->options().kernel, "/given");
  EXPECT_EQ((*given)->options().kernel_modules, "");
}

TEST(Subnets, AddressesOfEachSlash30) {
  auto net = subnet_addresses(7, "flk0");
  EXPECT_EQ(net.host_address, "172.19.0.29");
  EXPECT_EQ(net.guest_address, "172.19.0.30");
  EXPECT_EQ(net.prefix, 30);
  EXPECT_EQ(net.tap, "flk0");
  EXPECT_EQ(subnet_addresses(16383, "x").guest_address, "172.19.255.254");
}

}  // namespace
