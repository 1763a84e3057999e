// MachineConfig to and from Fly's JSON (lib/store/machine_config_json.cpp), and the names of
// enums, signals and durations it uses (lib/store/names.cpp).
#include <flick/machine.h>

#include "store/machine_config_json.h"
#include "store/names.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace {

using namespace flick;
using namespace std::chrono_literals;
using nlohmann::json;

MachineConfig parse(std::string_view text, std::vector<std::string>* warnings = nullptr) {
  auto r = MachineConfig::from_json(text, warnings);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : MachineConfig{};
}

// The message of from_json's invalid_argument error.
std::string error_of(std::string_view text) {
  auto r = MachineConfig::from_json(text);
  if (r.ok()) return "accepted";
  EXPECT_EQ(r.error().code, Errc::invalid_argument) << r.error().message;
  return r.error().message;
}

// A config shaped like the examples of Fly's Machines API docs.
constexpr const char* kFlyConfig = R"({
  "image": "registry-1.docker.io/library/nginx:1.27",
  "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
  "env": {"APP_ENV": "production", "PORT": "8080"},
  "init": {"cmd": ["nginx", "-g", "daemon off;"]},
  "services": [
    {
      "protocol": "tcp",
      "internal_port": 8080,
      "ports": [
        {"port": 443, "handlers": ["tls", "http"]},
        {"port": 80, "handlers": ["http"], "force_https": true}
      ],
      "autostop": "stop",
      "autostart": true,
      "min_machines_running": 0,
      "concurrency": {"type": "connections", "soft_limit": 20, "hard_limit": 25}
    }
  ],
  "checks": {
    "httpget": {"type": "http", "port": 8080, "method": "GET", "path": "/healthz",
                "interval": "15s", "timeout": "10s", "grace_period": "5s"}
  },
  "restart": {"policy": "on-failure", "max_retries": 5},
  "stop_config": {"signal": "SIGTERM", "timeout": "1m30s"},
  "metadata": {"fly_platform_version": "v2", "fly_process_group": "app"},
  "mounts": [{"volume": "vol_data", "path": "/data", "name": "data", "size_gb": 10, "encrypted": true}],
  "auto_destroy": false
})";

TEST(ConfigJsonRoundTrip, AFlyConfigSurvivesWhole) {
  std::vector<std::string> warnings;
  MachineConfig c = parse(kFlyConfig, &warnings);
  EXPECT_EQ(c.image, "registry-1.docker.io/library/nginx:1.27");
  EXPECT_EQ(c.guest.cpu_kind, "shared");
  EXPECT_EQ(c.guest.cpus, 1u);
  EXPECT_EQ(c.guest.memory_mb, 256u);
  EXPECT_EQ(c.env.at("PORT"), "8080");
  EXPECT_EQ(c.init.cmd, (std::vector<std::string>{"nginx", "-g", "daemon off;"}));
  EXPECT_EQ(c.restart.policy, RestartPolicy::on_failure);
  EXPECT_EQ(c.restart.max_retries, 5u);
  EXPECT_EQ(c.stop_config.signal, 15);
  EXPECT_EQ(c.stop_config.timeout, 90s);
  EXPECT_EQ(c.metadata.at("fly_process_group"), "app");
  ASSERT_EQ(c.mounts.size(), 1u);
  EXPECT_EQ(c.mounts[0].volume, "vol_data");
  EXPECT_EQ(c.mounts[0].path, "/data");
  EXPECT_FALSE(c.auto_destroy);
  EXPECT_EQ(c.unimplemented.at("mounts[0].size_gb"), "10");
  EXPECT_EQ(c.unimplemented.at("mounts[0].encrypted"), "true");
  EXPECT_EQ(c.unimplemented.at("mounts[0].name"), "\"data\"");
  EXPECT_EQ(c.unimplemented.size(), 4u);  // and checks
  EXPECT_EQ(warnings.size(), 4u);

  // services is raw: its text is the input's, compact, keys in their order.
  EXPECT_EQ(c.services_json, nlohmann::ordered_json::parse(kFlyConfig)["services"].dump());
  EXPECT_EQ(c.services_json.rfind(R"([{"protocol":"tcp","internal_port":8080,"ports":)", 0), 0u) << c.services_json;

  EXPECT_EQ(json::parse(c.to_json()), json::parse(kFlyConfig));
  // Printing is deterministic, and reading it back changes nothing.
  EXPECT_EQ(parse(c.to_json()), c);
  EXPECT_EQ(parse(c.to_json()).to_json(), c.to_json());
}

TEST(ConfigJsonRoundTrip, EmptyObjectIsFlicksDefaults) {
  std::vector<std::string> warnings;
  MachineConfig c = parse("{}", &warnings);
  EXPECT_EQ(c, MachineConfig{});
  EXPECT_TRUE(warnings.empty());
  // The fields always written, in their fixed order; the rest are absent when unset.
  EXPECT_EQ(c.to_json(),
            R"({"image":"","guest":{"cpu_kind":"shared","cpus":1,"memory_mb":256},)"
            R"("restart":{"policy":"no","max_retries":3},"auto_destroy":false,)"
            R"("stop_config":{"signal":"SIGINT","timeout":"5s"}})");
  EXPECT_EQ(parse(c.to_json()), c);
  EXPECT_EQ(parse(" {\n} "), MachineConfig{});
}

TEST(ConfigJsonRoundTrip, NullIsTheSameAsAbsent) {
  MachineConfig c = parse(R"({"image":"a","env":null,"guest":{"cpus":null},"services":null,
                              "checks":null,"restart":{"policy":null},"init":null,"mounts":null,
                              "stop_config":{"signal":null}})");
  MachineConfig want;
  want.image = "a";
  EXPECT_EQ(c, want);
}

TEST(ConfigJsonRoundTrip, AFullyPopulatedStructComesBackEqual) {
  MachineConfig c;
  c.image = "oci:/images/busybox:latest";
  c.guest.cpu_kind = "performance";
  c.guest.cpus = 4;
  c.guest.memory_mb = 2048;
  c.guest.kernel = "/k/vmlinuz";
  c.guest.kernel_modules = "/k/modules";
  c.guest.rootfs_size_mb = 512;
  c.guest.kernel_args = {"quiet", "loglevel=3"};
  c.env = {{"A", "1"}, {"B", "two words"}, {"C", "ünïcødé \"quoted\"\n"}};
  c.init.entrypoint = {"/bin/sh", "-c"};
  c.init.cmd = {"echo hi"};
  c.init.tty = true;
  c.init.kernel_args = {"init_arg=1"};
  c.init.user = "nobody";
  c.init.workdir = "/srv";
  c.mounts = {{"data", "/data"}, {"logs", "/var/log/app"}};
  c.restart = {RestartPolicy::always, 7};
  c.auto_destroy = true;
  c.stop_config = {15, 1500ms};
  c.metadata = {{"team", "infra"}, {"empty", ""}};
  c.start_timeout = 2min;
  c.pull = PullPolicy::always;
  c.services_json = R"([{"protocol":"tcp","internal_port":8080,"zzz":{"b":1,"a":2}}])";
  c.unimplemented = {
      {"checks", R"({"alive":{"type":"tcp","port":8080}})"},
      {"schedule", R"("daily")"},
      {"standbys", R"(["148ed193b95389"])"},
      {"guest.gpus", "1"},
      {"guest.max_memory_mb", "4096"},
      {"init.swap_size_mb", "512"},
      {"restart.gpu_bid_price", "0.5"},
      {"mounts[0].encrypted", "true"},
      {"mounts[1].size_gb", "3"},
  };
  std::string text = c.to_json();
  std::vector<std::string> warnings;
  EXPECT_EQ(parse(text, &warnings), c) << text;
  EXPECT_EQ(warnings.size(), c.unimplemented.size());
  EXPECT_EQ(text, parse(text).to_json());

  json j = json::parse(text);
  EXPECT_EQ(j["guest"]["max_memory_mb"], 4096);
  EXPECT_EQ(j["init"]["swap_size_mb"], 512);
  EXPECT_EQ(j["restart"]["gpu_bid_price"], 0.5);
  EXPECT_EQ(j["mounts"][1], json::parse(R"({"volume":"logs","path":"/var/log/app","size_gb":3})"));
  EXPECT_EQ(j["start_timeout"], "2m0s");
  EXPECT_EQ(j["pull"], "always");
  EXPECT_EQ(j["stop_config"], json::parse(R"({"signal":"SIGTERM","timeout":"1.5s"})"));
  EXPECT_EQ(j["schedule"], "daily");
}

TEST(ConfigJsonErrors, UnknownFieldsNameTheirPath) {
  EXPECT_EQ(error_of(R"({"imagez":"x"})"), "machine config: imagez: unknown field");
  EXPECT_EQ(error_of(R"({"guest":{"cpuz":2}})"), "machine config: guest.cpuz: unknown field");
  EXPECT_EQ(error_of(R"({"init":{"shell":"sh"}})"), "machine config: init.shell: unknown field");
  EXPECT_EQ(error_of(R"({"restart":{"retries":1}})"), "machine config: restart.retries: unknown field");
  EXPECT_EQ(error_of(R"({"stop_config":{"grace":"5s"}})"), "machine config: stop_config.grace: unknown field");
  EXPECT_EQ(error_of(R"({"mounts":[{"volume":"a","path":"/a"},{"volume":"b","readonly":true}]})"),
            "machine config: mounts[1].readonly: unknown field");
  // A kept field's name is kept only where Fly has it.
  EXPECT_EQ(error_of(R"({"guest":{"checks":{}}})"), "machine config: guest.checks: unknown field");
  EXPECT_EQ(error_of(R"({"gpus":1})"), "machine config: gpus: unknown field");
}

TEST(ConfigJsonErrors, WrongTypesNameTheFieldAndTheType) {
  EXPECT_EQ(error_of(R"({"guest":{"cpus":"two"}})"), R"(machine config: guest.cpus: expected a number, got "two")");
  EXPECT_EQ(error_of(R"({"guest":{"cpus":1.5}})"), "machine config: guest.cpus: expected a whole number, got 1.5");
  EXPECT_EQ(error_of(R"({"guest":{"memory_mb":-1}})"),
            "machine config: guest.memory_mb: expected a number in 0..4294967295, got -1");
  EXPECT_EQ(error_of(R"({"guest":{"memory_mb":4294967296}})"),
            "machine config: guest.memory_mb: expected a number in 0..4294967295, got 4294967296");
  EXPECT_EQ(error_of(R"({"guest":{"cpu_kind":"fast"}})"),
            R"(machine config: guest.cpu_kind: expected "shared" or "performance", got "fast")");
  EXPECT_EQ(error_of(R"({"guest":[]})"), "machine config: guest: expected an object, got []");
  EXPECT_EQ(error_of(R"({"image":5})"), "machine config: image: expected a string, got 5");
  EXPECT_EQ(error_of(R"({"pull":"sometimes"})"),
            R"(machine config: pull: expected "always", "missing" or "never", got "sometimes")");
  EXPECT_EQ(error_of(R"({"pull":true})"), R"(machine config: pull: expected "always", "missing" or "never", got true)");
  EXPECT_EQ(error_of(R"({"env":{"A":"1","B":2}})"), "machine config: env.B: expected a string, got 2");
  EXPECT_EQ(error_of(R"({"env":["A=1"]})"), R"(machine config: env: expected an object of strings, got ["A=1"])");
  EXPECT_EQ(error_of(R"({"metadata":{"k":true}})"), "machine config: metadata.k: expected a string, got true");
  EXPECT_EQ(error_of(R"({"init":{"cmd":["a",2]}})"), "machine config: init.cmd[1]: expected a string, got 2");
  EXPECT_EQ(error_of(R"({"init":{"exec":"sh"}})"), R"(machine config: init.exec: expected an array of strings, got "sh")");
  EXPECT_EQ(error_of(R"({"init":{"tty":"yes"}})"), R"(machine config: init.tty: expected a boolean, got "yes")");
  EXPECT_EQ(error_of(R"({"auto_destroy":1})"), "machine config: auto_destroy: expected a boolean, got 1");
  EXPECT_EQ(error_of(R"({"mounts":{"volume":"a"}})"), R"(machine config: mounts: expected an array, got {"volume":"a"})");
  EXPECT_EQ(error_of(R"({"mounts":["a"]})"), R"(machine config: mounts[0]: expected an object, got "a")");
  EXPECT_EQ(error_of(R"({"mounts":[{"path":7}]})"), "machine config: mounts[0].path: expected a string, got 7");
  EXPECT_EQ(error_of(R"({"services":{"protocol":"tcp"}})"),
            R"(machine config: services: expected an array, got {"protocol":"tcp"})");
  EXPECT_EQ(error_of(R"({"restart":{"policy":"sometimes"}})"),
            R"(machine config: restart.policy: expected "no", "always" or "on-failure", got "sometimes")");
  EXPECT_EQ(error_of(R"({"restart":{"policy":"spot-price"}})"),
            R"(machine config: restart.policy: "spot-price" is not supported: use "no", "always" or "on-failure")");
  EXPECT_EQ(error_of(R"({"restart":{"max_retries":"3"}})"),
            R"(machine config: restart.max_retries: expected a number, got "3")");
  EXPECT_EQ(error_of("[1]"), "machine config: expected an object, got [1]");
  EXPECT_EQ(error_of("null"), "machine config: expected an object, got null");
  // A long value is cut short in the message.
  std::string long_value(200, 'x');
  EXPECT_EQ(error_of(R"({"image":[")" + long_value + R"("]})"),
            "machine config: image: expected a string, got [\"" + std::string(58, 'x') + "...");
}

TEST(ConfigJsonErrors, DeepRawJsonIsRefusedNotOverflowed) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error_of(R"({"services":[)" + deep + "]}"), "machine config: services: nested too deep");
  EXPECT_EQ(error_of(R"({"checks":)" + deep + "}"), "machine config: checks: nested too deep");
  EXPECT_EQ(error_of(R"({"image":)" + deep + "}"), "machine config: image: expected a string, got [...]");
}

TEST(ConfigJsonErrors, MalformedJsonSaysWhere) {
  for (const char* text : {"", "{", R"({"image": })", "{\n  \"image\": \"a\",\n}", R"({"image":"a"} x)"}) {
    auto r = MachineConfig::from_json(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::malformed) << text;
    EXPECT_EQ(r.error().message.rfind("machine config: parse error at line ", 0), 0u) << r.error().message;
  }
  auto r = MachineConfig::from_json("{\n  \"image\": \"a\",\n}");
  EXPECT_NE(r.error().message.find("line 3, column 1"), std::string::npos) << r.error().message;
}

TEST(ConfigJsonWarnings, OnePerKeptFieldInDocumentOrder) {
  std::vector<std::string> warnings;
  MachineConfig c = parse(R"({
    "image": "a", "dns": {"skip_registration": true},
    "guest": {"cpus": 2, "max_memory_mb": 1024, "persist_rootfs": "always"},
    "init": {"swap_size_mb": 256}, "restart": {"policy": "always", "gpu_bid_price": 1.25},
    "mounts": [{"volume": "v", "path": "/v", "size_gb": 5}],
    "files": [{"guest_path": "/etc/x", "raw_value": "aGk="}], "size": "shared-cpu-1x",
    "disable_machine_autostart": false, "schedule": "hourly", "processes": [], "statics": [],
    "metrics": {"port": 9091, "path": "/metrics"}, "standbys": [], "rootfs": {"size_gb": 2},
    "containers": [], "cache_drive": {"size_mb": 100}, "volumes": [], "spot": {}
  })", &warnings);
  const std::vector<std::string> fields = {
      "dns", "guest.max_memory_mb", "guest.persist_rootfs", "init.swap_size_mb", "restart.gpu_bid_price",
      "mounts[0].size_gb", "files", "size", "disable_machine_autostart", "schedule", "processes",
      "statics", "metrics", "standbys", "rootfs", "containers", "cache_drive", "volumes", "spot"};
  ASSERT_EQ(warnings.size(), fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    EXPECT_EQ(warnings[i], fields[i] + ": accepted and kept, but flick does not implement it yet");
    EXPECT_TRUE(c.unimplemented.count(fields[i])) << fields[i];
  }
  EXPECT_EQ(c.unimplemented.size(), fields.size());
  EXPECT_EQ(c.unimplemented.at("guest.persist_rootfs"), R"("always")");
  EXPECT_EQ(c.unimplemented.at("metrics"), R"({"port":9091,"path":"/metrics"})");
  EXPECT_EQ(c.unimplemented.at("disable_machine_autostart"), "false");
  // Written back where they were.
  json j = json::parse(c.to_json());
  EXPECT_EQ(j["guest"]["persist_rootfs"], "always");
  EXPECT_EQ(j["mounts"][0]["size_gb"], 5);
  EXPECT_EQ(j["restart"]["gpu_bid_price"], 1.25);
  EXPECT_EQ(j["cache_drive"]["size_mb"], 100);

  // No warnings wanted: the same config, the same result.
  auto quiet = MachineConfig::from_json(R"({"checks":{"a":{}}})");
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->unimplemented.at("checks"), R"({"a":{}})");
}

TEST(ConfigJsonServices, KeptAsTheyCameEvenWhatFlyDoesNotHave) {
  const char* text = R"({"services":[{"protocol":"udp","frobnicate":{"z":1,"a":[true,null,2.5]},
                         "internal_port":53,"ports":[{"port":53,"madeup":"x"}]}]})";
  MachineConfig c = parse(text);
  EXPECT_EQ(c.services_json,
            R"([{"protocol":"udp","frobnicate":{"z":1,"a":[true,null,2.5]},"internal_port":53,"ports":[{"port":53,"madeup":"x"}]}])");
  EXPECT_EQ(json::parse(c.to_json())["services"], json::parse(text)["services"]);
  EXPECT_EQ(parse(R"({"services":[]})").services_json, "[]");
}

TEST(ConfigJsonSignals, NamesBareNamesAndNumbers) {
  auto signal_of = [](const std::string& v) {
    return parse(R"({"stop_config":{"signal":)" + v + "}}").stop_config.signal;
  };
  EXPECT_EQ(signal_of(R"("SIGINT")"), 2);
  EXPECT_EQ(signal_of(R"("SIGTERM")"), 15);
  EXPECT_EQ(signal_of(R"("SIGHUP")"), 1);
  EXPECT_EQ(signal_of(R"("SIGQUIT")"), 3);
  EXPECT_EQ(signal_of(R"("SIGKILL")"), 9);
  EXPECT_EQ(signal_of(R"("SIGUSR1")"), 10);
  EXPECT_EQ(signal_of(R"("SIGUSR2")"), 12);
  EXPECT_EQ(signal_of(R"("TERM")"), 15);
  EXPECT_EQ(signal_of(R"("sigwinch")"), 28);
  EXPECT_EQ(signal_of("9"), 9);
  EXPECT_EQ(signal_of(R"("9")"), 9);
  EXPECT_EQ(signal_of("40"), 40);

  MachineConfig c;
  for (int signo : {1, 2, 3, 9, 10, 12, 15}) {
    c.stop_config.signal = signo;
    json j = json::parse(c.to_json());
    EXPECT_EQ(j["stop_config"]["signal"], store::signal_name(signo));
    EXPECT_EQ(parse(c.to_json()).stop_config.signal, signo);
  }
  c.stop_config.signal = 40;  // no name: written as a number
  EXPECT_EQ(json::parse(c.to_json())["stop_config"]["signal"], 40);
  EXPECT_EQ(parse(c.to_json()).stop_config.signal, 40);

  EXPECT_EQ(error_of(R"({"stop_config":{"signal":"SIGFOO"}})"),
            R"(machine config: stop_config.signal: unknown signal "SIGFOO")");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":""}})"), R"(machine config: stop_config.signal: unknown signal "")");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":"SIG"}})"), R"(machine config: stop_config.signal: unknown signal "SIG")");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":0}})"), "machine config: stop_config.signal: unknown signal 0");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":65}})"), "machine config: stop_config.signal: unknown signal 65");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":-15}})"), "machine config: stop_config.signal: unknown signal -15");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":"15x"}})"), R"(machine config: stop_config.signal: unknown signal "15x")");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":true}})"),
            "machine config: stop_config.signal: expected a signal name or number, got true");
  EXPECT_EQ(error_of(R"({"stop_config":{"signal":2.0}})"),
            "machine config: stop_config.signal: expected a signal name or number, got 2.0");
}

TEST(ConfigJsonDurations, GoStringsAndNanoseconds) {
  auto timeout_of = [](const std::string& v) {
    return parse(R"({"stop_config":{"timeout":)" + v + "}}").stop_config.timeout;
  };
  EXPECT_EQ(timeout_of(R"("5s")"), 5s);
  EXPECT_EQ(timeout_of(R"("1m30s")"), 90s);
  EXPECT_EQ(timeout_of(R"("500ms")"), 500ms);
  EXPECT_EQ(timeout_of(R"("1h")"), 1h);
  EXPECT_EQ(timeout_of(R"("1.5s")"), 1500ms);
  EXPECT_EQ(timeout_of(R"("1.5h")"), 90min);
  EXPECT_EQ(timeout_of(R"(".5s")"), 500ms);
  EXPECT_EQ(timeout_of(R"("1h2m3.25s")"), 1h + 2min + 3250ms);
  EXPECT_EQ(timeout_of(R"("2000000us")"), 2s);
  EXPECT_EQ(timeout_of(R"("3000000000ns")"), 3s);
  EXPECT_EQ(timeout_of(R"("0")"), 0ms);
  EXPECT_EQ(timeout_of(R"("0s")"), 0ms);
  EXPECT_EQ(timeout_of("5000000000"), 5s);  // integer nanoseconds, as fly-go reads them
  EXPECT_EQ(timeout_of("0"), 0ms);
  EXPECT_EQ(parse(R"({"start_timeout":"2m"})").start_timeout, 2min);

  const std::string at = "machine config: stop_config.timeout: ";
  auto bad = [](const std::string& v) { return error_of(R"({"stop_config":{"timeout":)" + v + "}}"); };
  for (const char* v : {R"("5x")", R"("5")", R"("")", R"("s")", R"(".s")", R"("5 s")", R"("1m30")", R"("+5s")"})
    EXPECT_EQ(bad(v), at + v + R"( is not a duration (like "5s", "1m30s" or "500ms"))");
  EXPECT_EQ(bad(R"("-1s")"), at + R"("-1s" is negative)");
  EXPECT_EQ(bad("-5"), at + "-5 is negative");
  EXPECT_EQ(bad(R"("2562048h")"), at + R"("2562048h" is too long)");
  EXPECT_EQ(bad(R"("99999999999999999999s")"), at + R"("99999999999999999999s" is too long)");
  EXPECT_EQ(bad(R"("2562047h60m")"), at + R"("2562047h60m" is too long)");
  EXPECT_EQ(bad("9223372036854775808"), at + "9223372036854775808 is too long");
  EXPECT_EQ(bad(R"("1500us")"), at + R"("1500us" is not a whole number of milliseconds)");
  EXPECT_EQ(bad("1"), at + "1 is not a whole number of milliseconds");
  EXPECT_EQ(bad("1.5"), at + R"(expected a duration (a string like "5s" or integer nanoseconds), got 1.5)");
  EXPECT_EQ(bad("true"), at + R"(expected a duration (a string like "5s" or integer nanoseconds), got true)");
  EXPECT_EQ(error_of(R"({"start_timeout":"soon"})"),
            R"(machine config: start_timeout: "soon" is not a duration (like "5s", "1m30s" or "500ms"))");
}

TEST(ConfigJsonDurations, PrintedAsGoDoes) {
  EXPECT_EQ(store::format_duration(0ms), "0s");
  EXPECT_EQ(store::format_duration(1ms), "1ms");
  EXPECT_EQ(store::format_duration(500ms), "500ms");
  EXPECT_EQ(store::format_duration(5s), "5s");
  EXPECT_EQ(store::format_duration(1500ms), "1.5s");
  EXPECT_EQ(store::format_duration(1050ms), "1.05s");
  EXPECT_EQ(store::format_duration(60s), "1m0s");
  EXPECT_EQ(store::format_duration(90s), "1m30s");
  EXPECT_EQ(store::format_duration(61001ms), "1m1.001s");
  EXPECT_EQ(store::format_duration(1h), "1h0m0s");
  EXPECT_EQ(store::format_duration(26h + 3min + 4s), "26h3m4s");
  EXPECT_EQ(store::format_duration(-1500ms), "-1.5s");
  // Whatever it prints, it reads back.
  for (auto d : {0ms, 1ms, 999ms, 1000ms, 1001ms, 59999ms, 3599999ms, 3600001ms, 86400000ms}) {
    auto back = store::parse_duration(store::format_duration(d));
    ASSERT_TRUE(back.ok()) << store::format_duration(d);
    EXPECT_EQ(*back, d) << store::format_duration(d);
  }
  MachineConfig c;
  c.stop_config.timeout = 90s;
  c.start_timeout = 500ms;
  json j = json::parse(c.to_json());
  EXPECT_EQ(j["stop_config"]["timeout"], "1m30s");
  EXPECT_EQ(j["start_timeout"], "500ms");
}

TEST(ConfigJsonRestart, PoliciesAndFlysEmptyDefault) {
  EXPECT_EQ(parse(R"({"restart":{"policy":"no"}})").restart.policy, RestartPolicy::no);
  EXPECT_EQ(parse(R"({"restart":{"policy":"always"}})").restart.policy, RestartPolicy::always);
  EXPECT_EQ(parse(R"({"restart":{"policy":"on-failure"}})").restart.policy, RestartPolicy::on_failure);
  // An empty policy is Fly's default; an absent one is flick's.
  EXPECT_EQ(parse(R"({"restart":{"policy":""}})").restart.policy, RestartPolicy::on_failure);
  EXPECT_EQ(parse(R"({"restart":{"max_retries":9}})").restart.policy, RestartPolicy::no);
  EXPECT_EQ(parse(R"({"restart":{"max_retries":9}})").restart.max_retries, 9u);
  EXPECT_EQ(parse("{}").restart.policy, RestartPolicy::no);
  // Written explicitly, so that a reader with Fly's default gets the same policy.
  EXPECT_EQ(json::parse(MachineConfig{}.to_json())["restart"]["policy"], "no");
}

TEST(ConfigJsonNames, EveryEnumValueReadsBack) {
  for (int i = 0; i <= static_cast<int>(MachineState::destroyed); ++i) {
    auto s = static_cast<MachineState>(i);
    EXPECT_EQ(store::machine_state_from_string(to_string(s)), s) << to_string(s);
  }
  for (int i = 0; i <= static_cast<int>(RestartPolicy::on_failure); ++i) {
    auto p = static_cast<RestartPolicy>(i);
    EXPECT_EQ(store::restart_policy_from_string(to_string(p)), p) << to_string(p);
  }
  for (int i = 0; i <= static_cast<int>(MachineEventType::update); ++i) {
    auto t = static_cast<MachineEventType>(i);
    EXPECT_EQ(store::machine_event_type_from_string(to_string(t)), t) << to_string(t);
  }
  EXPECT_STREQ(to_string(MachineState::started), "started");
  EXPECT_STREQ(to_string(RestartPolicy::on_failure), "on-failure");
  EXPECT_STREQ(to_string(MachineEventType::exit), "exit");
  EXPECT_EQ(store::machine_state_from_string("Started"), std::nullopt);
  EXPECT_EQ(store::machine_state_from_string("unknown"), std::nullopt);
  EXPECT_EQ(store::restart_policy_from_string("on_failure"), std::nullopt);
  EXPECT_EQ(store::restart_policy_from_string(""), std::nullopt);
  EXPECT_EQ(store::machine_event_type_from_string(""), std::nullopt);

  EXPECT_STREQ(store::signal_name(15), "SIGTERM");
  EXPECT_STREQ(store::signal_name(31), "SIGSYS");
  EXPECT_EQ(store::signal_name(0), nullptr);
  EXPECT_EQ(store::signal_name(32), nullptr);
  for (int signo = 1; signo <= 31; ++signo) EXPECT_EQ(store::signal_from_string(store::signal_name(signo)), signo);
  EXPECT_EQ(store::signal_from_string("64"), 64);
  EXPECT_EQ(store::signal_from_string("65"), std::nullopt);
  EXPECT_EQ(store::signal_from_string("0"), std::nullopt);
  EXPECT_EQ(store::signal_from_string("99999999999999999999"), std::nullopt);
}

// services(): the fields the proxy uses, read from Fly's own example; the rest stays raw.
TEST(MachineConfigServices, ReadsWhatTheProxyUsesFromFlysExample) {
  MachineConfig c = parse(kFlyConfig);
  auto services = c.services();
  ASSERT_TRUE(services.ok()) << services.error().message;
  ASSERT_EQ(services->size(), 1u);
  const ServiceConfig& s = (*services)[0];
  EXPECT_EQ(s.protocol, "tcp");
  EXPECT_EQ(s.internal_port, 8080);
  EXPECT_EQ(s.ports, (std::vector<uint16_t>{443, 80}));
  EXPECT_TRUE(s.autostart);
  EXPECT_EQ(s.autostop, Autostop::stop);
  EXPECT_EQ(s.min_machines_running, 0u);
  EXPECT_EQ(s.soft_limit, 20u);
  EXPECT_EQ(s.hard_limit, 25u);
  EXPECT_EQ(s.autostop_idle, std::chrono::minutes(5));
  EXPECT_TRUE(store::check_json_fields(c).ok());
  EXPECT_TRUE(MachineConfig{}.services()->empty());
  c.services_json = R"([{"internal_port":8080}])";
  ASSERT_TRUE(c.services().ok());
  EXPECT_EQ((*c.services())[0].protocol, "tcp");
}

TEST(MachineConfigServices, AutostopTakesFlysWordsAndBooleans) {
  auto autostop = [](const char* value) {
    MachineConfig c;
    c.services_json = std::string(R"([{"protocol":"tcp","internal_port":80,"autostop":)") + value +
                      R"(,"autostop_idle":"30s"}])";
    auto s = c.services();
    EXPECT_TRUE(s.ok()) << value << ": " << s.error().message;
    if (s.ok()) {
      EXPECT_EQ((*s)[0].autostop_idle, std::chrono::seconds(30));
    }
    return s.ok() ? (*s)[0].autostop : Autostop::off;
  };
  EXPECT_EQ(autostop(R"("suspend")"), Autostop::suspend);
  EXPECT_EQ(autostop(R"("stop")"), Autostop::stop);
  EXPECT_EQ(autostop(R"("off")"), Autostop::off);
  EXPECT_EQ(autostop("true"), Autostop::stop);
  EXPECT_EQ(autostop("false"), Autostop::off);
}

// A bad service fails validate() (so create and update: it calls check_json_fields) naming
// the field.
TEST(MachineConfigServices, BadServicesAreRefusedNamingTheField) {
  auto error = [](const std::string& services) {
    MachineConfig c;
    c.image = "a";
    c.services_json = services;
    auto v = store::check_json_fields(c);
    if (v.ok()) return std::string("accepted");
    EXPECT_EQ(v.error().code, Errc::invalid_argument);
    return v.error().message;
  };
  const std::string tcp = R"({"protocol":"tcp","internal_port":8080,)";
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"port":80},{"port":70000}]}])"),
            "machine config: services[0].ports[1].port: 70000 is not in 1..65535");
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"port":0}]}])"),
            "machine config: services[0].ports[0].port: 0 is not in 1..65535");
  EXPECT_EQ(error(R"([{"protocol":"tcp","internal_port":65536}])"),
            "machine config: services[0].internal_port: 65536 is not in 1..65535");
  EXPECT_EQ(error(R"([{"protocol":"tcp"}])"), "machine config: services[0].internal_port: missing");
  EXPECT_EQ(error(R"([{"internal_port":80}])"), "accepted");  // tcp
  EXPECT_EQ(error(R"([{"protocol":"udp","internal_port":53}])"),
            "machine config: services[0].protocol: \"udp\" is not supported: flick's proxy speaks tcp only");
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"start_port":8000,"end_port":8010}]}])"),
            "machine config: services[0].ports[0]: port ranges (start_port, end_port) are not supported: give each port");
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"handlers":["http"]}]}])"),
            "machine config: services[0].ports[0].port: missing");
  EXPECT_EQ(error("[" + tcp + R"("autostop":"sometimes"}])"),
            "machine config: services[0].autostop: expected \"off\", \"stop\", \"suspend\" or a boolean, got \"sometimes\"");
  EXPECT_EQ(error("[" + tcp + R"("concurrency":{"type":"requests"}}])"),
            "machine config: services[0].concurrency.type: \"requests\" is not supported: flick's proxy counts connections");
  EXPECT_EQ(error("[" + tcp + R"("concurrency":{"type":"connections","soft_limit":30,"hard_limit":20}}])"),
            "machine config: services[0].concurrency.soft_limit: 30 is above hard_limit 20");
  EXPECT_EQ(error("[" + tcp + R"("autostop_idle":"0s"}])"),
            "machine config: services[0].autostop_idle: must be longer than 0s");
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"port":80}]},)" + tcp + R"("ports":[{"port":80}]}])"),
            "machine config: services[1].ports[0].port: 80 is published by services[0].ports[0].port too");
  EXPECT_EQ(error(R"(["tcp"])"), R"(machine config: services[0]: expected an object, got "tcp")");
  EXPECT_EQ(error(R"({"protocol":"tcp"})"), "machine config: services: is not a JSON array");
  // Fields the proxy does not use are left alone, as Fly's clients send them.
  EXPECT_EQ(error("[" + tcp + R"("ports":[{"port":443,"handlers":["tls"],"tls_options":{"alpn":["h2"]}}],"checks":[]}])"),
            "accepted");
}

}  // namespace
