// flick volume create|list|destroy|extend: an app's volumes, ext4 images that keep their data across
// a machine's starts and after it is destroyed.
#include "command.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <cstdio>
#include <memory>
#include <string>

namespace {

using namespace flick::cli;

struct VolumeOptions {
  flick::HostOptions host;
  std::string app;
  std::string volume;
  uint64_t size_gb = 1;
  bool json = false;
};

void add_common(CLI::App& cmd, VolumeOptions& o) {
  add_app_option(cmd, &o.app);
  add_state_dir_option(cmd, &o.host);
}

void add_create(CLI::App& volume) {
  auto o = std::make_shared<VolumeOptions>();
  auto* cmd = volume.add_subcommand("create", "create a volume (an empty ext4 file system) in an app");
  cmd->footer("Names need not be unique (as Fly's); a machine's --volume takes the id or a name unique in its app.");
  cmd->add_option("NAME", o->volume, "the volume's name: 1-30 of a-z, 0-9 and _")->required()->type_name("");
  add_number(*cmd, "-s,--size", "GB", &o->size_gb, 1, 16384, "gigabytes from 1 to 16384",
             "its size in GB (default 1; sparse: only written blocks use disk)");
  add_json_flag(*cmd, &o->json);
  add_common(*cmd, *o);
  set_action(cmd, [o] {
    auto host = open_host(o->host);
    if (!host) return fail(host.error());
    const std::string app = app_or_default(o->app);
    if (auto a = check_app(**host, app); !a) return fail(a.error());
    auto made = (*host)->create_volume({o->volume, o->size_gb, app});
    if (!made) return fail(made.error());
    if (o->json) print_json(volume_json(*made));
    else std::printf("%s\n", made->id.c_str());
    return 0;
  });
}

void add_list(CLI::App& volume) {
  auto o = std::make_shared<VolumeOptions>();
  auto* cmd = volume.add_subcommand("list", "list an app's volumes");
  cmd->alias("ls");
  add_json_flag(*cmd, &o->json);
  add_common(*cmd, *o);
  set_action(cmd, [o] {
    auto host = open_host(o->host);
    if (!host) return fail(host.error());
    const std::string app = app_or_default(o->app);
    if (auto a = check_app(**host, app); !a) return fail(a.error());
    auto volumes = (*host)->list_volumes(app);
    if (!volumes) return fail(volumes.error());
    if (o->json) {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (const auto& v : *volumes) all.push_back(volume_json(v));
      print_json(all);
      return 0;
    }
    if (volumes->empty()) {
      std::printf("No volumes in app %s.\n", app.c_str());
      return 0;
    }
    Table table({"ID", "NAME", "SIZE", "ATTACHED VM"});
    for (const auto& v : *volumes)
      table.add({v.id, v.name, volume_json(v)["size_gb"].dump() + "GB", v.attached_machine});
    table.print();
    return 0;
  });
}

void add_destroy(CLI::App& volume) {
  auto o = std::make_shared<VolumeOptions>();
  auto* cmd = volume.add_subcommand("destroy", "delete a volume and its data");
  cmd->footer("A volume attached to a machine is deleted only once that machine is destroyed.");
  cmd->add_option("VOLUME", o->volume, "its id, or a name unique in the app")->required()->type_name("");
  add_common(*cmd, *o);
  set_action(cmd, [o] {
    auto host = open_host(o->host);
    if (!host) return fail(host.error());
    const std::string scope = app_scope(o->app);
    if (auto a = check_app(**host, scope); !a) return fail(a.error());
    if (auto r = (*host)->destroy_volume(o->volume, scope); !r) return fail(r.error());
    std::printf("volume %s destroyed\n", o->volume.c_str());
    return 0;
  });
}

void add_extend(CLI::App& volume) {
  auto o = std::make_shared<VolumeOptions>();
  auto* cmd = volume.add_subcommand("extend", "grow a volume");
  cmd->footer("Its file system grows when it is next mounted: a machine running on it sees the new size after a restart.");
  cmd->add_option("VOLUME", o->volume, "its id, or a name unique in the app")->required()->type_name("");
  add_number(*cmd, "-s,--size", "GB", &o->size_gb, 1, 16384, "gigabytes from 1 to 16384", "its new size in GB")
      ->required();
  add_json_flag(*cmd, &o->json);
  add_common(*cmd, *o);
  set_action(cmd, [o] {
    auto host = open_host(o->host);
    if (!host) return fail(host.error());
    const std::string scope = app_scope(o->app);
    if (auto a = check_app(**host, scope); !a) return fail(a.error());
    auto grown = (*host)->extend_volume(o->volume, o->size_gb, scope);
    if (!grown) return fail(grown.error());
    if (o->json) print_json(volume_json(*grown));
    else std::printf("volume %s is %lluGB\n", grown->id.c_str(), static_cast<unsigned long long>(o->size_gb));
    return 0;
  });
}

void add_volume_command(CLI::App& flick) {
  auto* volume = flick.add_subcommand("volume", "manage volumes: data that outlives machines");
  volume->require_subcommand(1);
  add_create(*volume);
  add_list(*volume);
  add_destroy(*volume);
  add_extend(*volume);
}

}  // namespace

FLICK_COMMAND("volume", add_volume_command);
