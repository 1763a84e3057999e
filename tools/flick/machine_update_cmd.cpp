// flick machine update|clone|metadata|cordon|uncordon|lease: what changes a machine besides its
// lifecycle, over the store or through a flickd (machines.h), with Fly's semantics (include/flick/machine.h).
#include "command.h"
#include "machine_options.h"
#include "machines.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flick::cli {

namespace {

// The machine a command works on, and how to reach it.
struct One {
  HostOptions host;
  std::string app;
  std::string machine;
  std::string lease_nonce;
  bool json = false;
};

void add_one(CLI::App& cmd, One& o, bool changes) {
  cmd.add_option("ID", o.machine, "the machine: its id or name")->required()->type_name("");
  add_app_option(cmd, &o.app);
  if (changes) add_lease_nonce_option(cmd, &o.lease_nonce);
  add_state_dir_option(cmd, &o.host);
}

// Opens the store (or reaches flickd), finds the machine, gives it the nonce, and runs `body`
// on it.
int with_machine(const One& o, const std::function<int(Machines&, MachineRef&)>& body) {
  auto machines = open_machines(o.host);
  if (!machines) return fail(machines.error());
  auto m = (*machines)->get(o.machine, app_scope(o.app));
  if (!m) return fail(m.error());
  (*m)->set_lease_nonce(o.lease_nonce);
  return body(**machines, **m);
}

// --- update ---

struct UpdateOptions {
  One target;
  std::optional<MachineConfig> file;                            // --config: the whole config
  std::vector<std::function<void(MachineConfig&)>> edits;       // the other options, in order
  bool skip_start = false;
};

void add_update(CLI::App& machine) {
  auto o = std::make_shared<UpdateOptions>();
  auto* cmd = machine.add_subcommand("update", "change a machine's config: a new version, restarted onto it");
  cmd->footer(
      "As Fly's update: the config is replaced (by --config FILE, else the machine's own) and\n"
      "the options given change it; a new version and instance_id are recorded. A new image is\n"
      "fetched and built first. A running machine is stopped and started on the new config; a\n"
      "created or stopped one is started too, unless --skip-start. Volume mounts change with\n"
      "--config. -p replaces the ports of the service with that internal port, or adds one.");
  add_one(*cmd, o->target, true);
  auto edit = [o](std::function<void(MachineConfig&)> f) { o->edits.push_back(std::move(f)); };
  add_value(
      *cmd, "--config", "FILE", [o](const std::string& path) { o->file = read_config_file(path); },
      "the whole new config, in Fly's JSON; the other options change it");
  add_value(
      *cmd, "--image", "IMAGE", [edit](const std::string& v) { edit([v](MachineConfig& c) { c.image = v; }); },
      "run this image");
  add_value(
      *cmd, "--pull", "POLICY",
      [edit](const std::string& v) {
        auto p = parse_pull_policy(v);
        if (!p) usage_error("--pull takes always, missing or never, not '" + v + "'");
        edit([p = *p](MachineConfig& c) { c.pull = p; });
      },
      "how the image is found at this update and later ones: always asks the registry again, missing uses "
      "the cached image, never only the cache");
  // A number of the guest's: NAME takes LOW..HIGH (`what` says so in the error).
  auto guest_number = [&](const char* name, const char* type, uint32_t low, uint32_t high, const char* what,
                          uint32_t GuestConfig::*field, const char* help) {
    add_value(
        *cmd, name, type,
        [edit, name, low, high, what, field](const std::string& v) {
          uint64_t n = 0;
          if (!parse_uint(v, high, &n) || n < low) usage_error(std::string(name) + " takes " + what + ", not '" + v + "'");
          edit([n, field](MachineConfig& c) { c.guest.*field = static_cast<uint32_t>(n); });
        },
        help);
  };
  guest_number("--cpus", "N", 1, 254, "1 to 254", &GuestConfig::cpus, "vCPUs");
  guest_number("--memory", "MB", 0, 1u << 20, "megabytes", &GuestConfig::memory_mb, "guest memory");
  guest_number("--rootfs-size", "MB", 0, 1u << 20, "megabytes", &GuestConfig::rootfs_size_mb,
               "the root filesystem's size (0: the image's content plus 256 MB)");
  add_values(
      *cmd, "-e,--env", "K=V",
      [edit](const std::string& v) {
        auto eq = v.find('=');
        if (eq == std::string::npos) usage_error("--env takes K=V, not '" + v + "'");
        edit([k = v.substr(0, eq), val = v.substr(eq + 1)](MachineConfig& c) { c.env[k] = val; });
      },
      "set an environment variable (repeatable)");
  add_values(
      *cmd, "--metadata", "K=V",
      [edit](const std::string& v) {
        MachineConfig parsed;
        parse_metadata(v, &parsed);
        edit([parsed](MachineConfig& c) {
          for (const auto& [k, val] : parsed.metadata) c.metadata[k] = val;
        });
      },
      "set a metadata key (repeatable)");
  add_service_options(*cmd, edit);
  add_value(
      *cmd, "--restart", "POLICY",
      [edit](const std::string& v) {
        RestartConfig r;
        parse_restart(v, &r);
        edit([r](MachineConfig& c) { c.restart = r; });
      },
      "no, always, on-failure[:MAX_RETRIES]");
  add_values(
      *cmd, "--cmd", "ARG",
      [edit](const std::string& v) { edit([v](MachineConfig& c) { c.init.cmd.push_back(v); }); },
      "the program, then one argument per --cmd (replaces the config's init.cmd)");
  add_value(
      *cmd, "--entrypoint", "PROG",
      [edit](const std::string& v) { edit([v](MachineConfig& c) { c.init.entrypoint = {v}; }); },
      "replace the image's entrypoint");
  add_value(
      *cmd, "--user", "USER", [edit](const std::string& v) { edit([v](MachineConfig& c) { c.init.user = v; }); },
      "run as USER (name, uid, name:group or uid:gid)");
  add_value(
      *cmd, "--workdir", "DIR", [edit](const std::string& v) { edit([v](MachineConfig& c) { c.init.workdir = v; }); },
      "working directory");
  cmd->add_flag("--skip-start", o->skip_start, "leave the machine stopped (Fly's skip_launch)");
  add_json_flag(*cmd, &o->target.json);
  add_kvm_device_option(*cmd, &o->target.host);
  works_through_api(cmd);
  set_action(cmd, [o, cmd] {
    return with_machine(o->target, [&](Machines&, MachineRef& m) {
      auto now = m.read(false);
      if (!now) return fail(now.error());
      MachineConfig c = o->file ? *o->file : now->config;
      if (cmd->count("--cmd")) c.init.cmd.clear();  // --cmd replaces the command, one word each
      try {
        for (const auto& e : o->edits) e(c);
      } catch (const CLI::ValidationError& bad) {  // an edit the machine's config cannot take
        return fail(bad.what());
      }
      if (auto valid = c.validate(); !valid) return fail(valid.error());
      flick::UpdateOptions how;
      how.skip_launch = o->skip_start;
      if (auto r = m.update(c, how); !r) return fail(r.error());
      auto updated = m.read(false);
      if (!updated) return fail(updated.error());
      if (o->target.json) print_json(updated->json);
      else std::printf("machine %s updated to version %llu (instance %s)\n", m.id().c_str(),
                       static_cast<unsigned long long>(updated->version), updated->instance_id.c_str());
      return 0;
    });
  });
}

// --- clone ---

struct CloneCommand {
  One target;
  std::string name;
  bool skip_start = false;
};

void add_clone(CLI::App& machine) {
  auto o = std::make_shared<CloneCommand>();
  auto* cmd = machine.add_subcommand("clone", "create a machine with another's config, and start it");
  cmd->footer(
      "As flyctl's `machine clone`: a new machine in the same app, with its own id, name and\n"
      "network, and the source's config; it prints the new id. Volumes are never shared: a\n"
      "machine with mounts cannot be cloned this way.");
  add_one(*cmd, o->target, false);
  cmd->add_option("--name", o->name, "the clone's name (default: its id)")->type_name("NAME");
  cmd->add_flag("--skip-start", o->skip_start, "leave the clone created, not started");
  add_json_flag(*cmd, &o->target.json);
  add_kvm_device_option(*cmd, &o->target.host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    return with_machine(o->target, [&](Machines& machines, MachineRef& source) {
      CloneOptions how;
      how.name = o->name;
      how.skip_launch = o->skip_start;
      auto made = machines.clone(source, how);
      if (!made) return fail(made.error());
      if (o->target.json) print_json(made->json);
      else std::printf("%s\n", made->id.c_str());
      return 0;
    });
  });
}

// --- metadata ---

struct MetadataCommand {
  One target;
  std::string key, value;
};

void add_metadata(CLI::App& machine) {
  auto* group = machine.add_subcommand("metadata", "get, set or delete a machine's metadata");
  group->require_subcommand(1);
  group->footer(
      "Metadata lives in the machine's config (Fly's config.metadata) but changes in place: no new\n"
      "version, and no lease needed. The guest reads it in /flick/metadata.json from its next start.");

  auto get = std::make_shared<MetadataCommand>();
  auto* g = group->add_subcommand("get", "print every key (K=V lines), or one key's value");
  add_one(*g, get->target, false);
  g->add_option("KEY", get->key, "the key")->type_name("");
  add_json_flag(*g, &get->target.json);
  works_through_api(g);
  set_action(g, [get] {
    return with_machine(get->target, [&](Machines&, MachineRef& m) {
      auto all = m.metadata();
      if (!all) return fail(all.error());
      if (!get->key.empty()) {
        auto it = all->find(get->key);
        if (it == all->end()) return fail("machine " + m.id() + " has no metadata key " + get->key);
        if (get->target.json) print_json({{"value", it->second}});
        else std::printf("%s\n", it->second.c_str());
        return 0;
      }
      if (get->target.json) {
        print_json(nlohmann::ordered_json(*all));
        return 0;
      }
      for (const auto& [k, v] : *all) std::printf("%s=%s\n", k.c_str(), v.c_str());
      return 0;
    });
  });

  auto set = std::make_shared<MetadataCommand>();
  auto* s = group->add_subcommand("set", "set a key");
  add_one(*s, set->target, false);
  s->add_option("KEY", set->key, "the key: 1 to 128 of a-z, A-Z, 0-9, _, . and -")->required()->type_name("");
  s->add_option("VALUE", set->value, "its value")->required()->type_name("");
  works_through_api(s);
  set_action(s, [set] {
    return with_machine(set->target, [&](Machines&, MachineRef& m) {
      if (auto r = m.set_metadata(set->key, set->value); !r) return fail(r.error());
      return 0;
    });
  });

  auto del = std::make_shared<MetadataCommand>();
  auto* d = group->add_subcommand("delete", "delete a key (one that is not there is not an error)");
  add_one(*d, del->target, false);
  d->add_option("KEY", del->key, "the key")->required()->type_name("");
  works_through_api(d);
  set_action(d, [del] {
    return with_machine(del->target, [&](Machines&, MachineRef& m) {
      if (auto r = m.delete_metadata(del->key); !r) return fail(r.error());
      return 0;
    });
  });
}

// --- cordon, uncordon ---

void add_cordon(CLI::App& machine, bool cordon) {
  auto o = std::make_shared<One>();
  auto* cmd = cordon ? machine.add_subcommand("cordon", "mark a machine cordoned (kept; the proxy will skip it)")
                     : machine.add_subcommand("uncordon", "clear a machine's cordon");
  add_one(*cmd, *o, true);
  works_through_api(cmd);
  set_action(cmd, [o, cordon] {
    return with_machine(*o, [&](Machines&, MachineRef& m) {
      if (auto r = m.cordon(cordon); !r) return fail(r.error());
      std::printf("machine %s %s\n", m.id().c_str(), cordon ? "cordoned" : "uncordoned");
      return 0;
    });
  });
}

// --- lease ---

struct LeaseCommand {
  One target;
  uint64_t ttl = 30;
  std::string description;
  std::string nonce;
};

void print_lease(const Lease& l, bool json) {
  if (json) return print_json(lease_json(l));
  std::printf("Nonce:       %s\nOwner:       %s\nExpires:     %s\nDescription: %s\nVersion:     %s\n", l.nonce.c_str(),
              l.owner.c_str(), rfc3339(l.expires_at).c_str(), l.description.c_str(), l.version.c_str());
}

void add_lease(CLI::App& machine) {
  auto* group = machine.add_subcommand("lease", "acquire, show or release a machine's lease");
  group->require_subcommand(1);
  group->footer(
      "While a lease is held, every command that changes the machine (start, stop, restart,\n"
      "signal, update, destroy, cordon, uncordon) needs --lease-nonce NONCE, from any process.");

  auto acquire = std::make_shared<LeaseCommand>();
  auto* a = group->add_subcommand("acquire", "take the lease (or refresh it, given its --lease-nonce); print its nonce");
  add_one(*a, acquire->target, true);
  add_number(*a, "--ttl", "SECONDS", &acquire->ttl, 1, 86400 * 365, "seconds from 1", "how long it lasts (default 30)");
  a->add_option("--description", acquire->description, "what the lease is for")->type_name("TEXT");
  add_json_flag(*a, &acquire->target.json);
  works_through_api(a);
  set_action(a, [acquire] {
    return with_machine(acquire->target, [&](Machines&, MachineRef& m) {
      auto l = m.acquire_lease(std::chrono::seconds(acquire->ttl), acquire->description);
      if (!l) return fail(l.error());
      if (acquire->target.json) print_json(lease_json(*l));
      else std::printf("%s\n", l->nonce.c_str());
      return 0;
    });
  });

  auto show = std::make_shared<LeaseCommand>();
  auto* s = group->add_subcommand("show", "print the machine's live lease");
  add_one(*s, show->target, false);
  add_json_flag(*s, &show->target.json);
  works_through_api(s);
  set_action(s, [show] {
    return with_machine(show->target, [&](Machines&, MachineRef& m) {
      auto l = m.lease();
      if (!l) return fail(l.error());
      print_lease(*l, show->target.json);
      return 0;
    });
  });

  auto release = std::make_shared<LeaseCommand>();
  auto* r = group->add_subcommand("release", "release the lease (its nonce: NONCE or --lease-nonce)");
  add_one(*r, release->target, true);
  r->add_option("NONCE", release->nonce, "the lease's nonce")->type_name("");
  works_through_api(r);
  set_action(r, [release] {
    return with_machine(release->target, [&](Machines&, MachineRef& m) {
      std::string nonce = release->nonce.empty() ? release->target.lease_nonce : release->nonce;
      if (nonce.empty()) return fail("releasing the lease of machine " + m.id() + " needs its nonce");
      if (auto res = m.release_lease(nonce); !res) return fail(res.error());
      std::printf("machine %s lease released\n", m.id().c_str());
      return 0;
    });
  });
}

}  // namespace

void add_machine_update_commands(CLI::App& machine) {
  add_update(machine);
  add_clone(machine);
  add_metadata(machine);
  add_cordon(machine, true);
  add_cordon(machine, false);
  add_lease(machine);
}

}  // namespace flick::cli
