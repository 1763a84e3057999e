// flick app create|list|destroy: the apps machines and volumes belong to, as Fly's.
#include "command.h"
#include "machines.h"
#include "store_cmd.h"

#include <flick/machine.h>

#include <cstdio>
#include <memory>
#include <string>

namespace {

using namespace flick::cli;

struct AppOptions {
  flick::HostOptions host;
  std::string name;
  std::string org;
  bool json = false;
  bool force = false;
};

void add_create(CLI::App& app) {
  auto o = std::make_shared<AppOptions>();
  auto* cmd = app.add_subcommand("create", "create an app");
  cmd->add_option("NAME", o->name, "the app's name: 1-63 of a-z, 0-9 and -")->required()->type_name("");
  cmd->add_option("-o,--org", o->org, "its organization (default personal)")->type_name("SLUG");
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    auto machines = open_machines(o->host);
    if (!machines) return fail(machines.error());
    auto made = (*machines)->create_app(o->name, o->org);
    if (!made) return fail(made.error());
    if (o->json) print_json(app_json(*made));
    else std::printf("app %s created\n", made->name.c_str());
    return 0;
  });
}

void add_list(CLI::App& app) {
  auto o = std::make_shared<AppOptions>();
  auto* cmd = app.add_subcommand("list", "list apps");
  cmd->alias("ls");
  add_json_flag(*cmd, &o->json);
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    auto machines = open_machines(o->host);
    if (!machines) return fail(machines.error());
    auto apps = (*machines)->list_apps();
    if (!apps) return fail(apps.error());
    if (o->json) {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (const auto& a : *apps) all.push_back(app_json(a));
      print_json(all);
      return 0;
    }
    Table table({"NAME", "ORG", "MACHINES", "VOLUMES", "CREATED"});
    for (const auto& a : *apps)
      table.add({a.name, a.org_slug, std::to_string(a.machine_count), std::to_string(a.volume_count),
                 rfc3339(a.created_at)});
    table.print();
    return 0;
  });
}

void add_destroy(CLI::App& app) {
  auto o = std::make_shared<AppOptions>();
  auto* cmd = app.add_subcommand("destroy", "destroy an app");
  cmd->footer("An app with machines or volumes needs --force, which destroys them (killing running machines).");
  cmd->add_option("NAME", o->name, "the app")->required()->type_name("");
  cmd->add_flag("-f,--force", o->force, "destroy its machines and volumes too");
  add_state_dir_option(*cmd, &o->host);
  works_through_api(cmd);
  set_action(cmd, [o] {
    auto machines = open_machines(o->host);
    if (!machines) return fail(machines.error());
    if (auto r = (*machines)->destroy_app(o->name, o->force); !r) return fail(r.error());
    std::printf("app %s destroyed\n", o->name.c_str());
    return 0;
  });
}

void add_app_command(CLI::App& flick) {
  auto* app = flick.add_subcommand("app", "manage apps: names that machines and volumes belong to");
  app->require_subcommand(1);
  add_create(*app);
  add_list(*app);
  add_destroy(*app);
}

}  // namespace

FLICK_COMMAND("app", add_app_command);
