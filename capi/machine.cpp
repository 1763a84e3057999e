// flick_machine_*: machines made, found, listed, changed and destroyed; their JSON is flickd's
// (lib/fly_json), their configs are read by MachineConfig::from_json as flickd reads them.
#include "objects.h"

#include "fly_json/fly_json.h"

#include <fstream>
#include <iterator>

namespace flick::capi {

static_assert(int(MachineState::created) == FLICK_MACHINE_CREATED && int(MachineState::started) == FLICK_MACHINE_STARTED &&
              int(MachineState::failed) == FLICK_MACHINE_FAILED && int(MachineState::destroyed) == FLICK_MACHINE_DESTROYED,
              "flick_machine_state follows flick::MachineState");

HandleTable<MachineRef>& machines() {
  static auto* table = new HandleTable<MachineRef>(0x4d, "machine");  // never destroyed
  return *table;
}

int parse_config(MachineConfig* out, const char* json, const char* fn) {
  if (!json) return fail_invalid(std::string(fn) + ": config_json is NULL");
  auto config = MachineConfig::from_json(json);
  if (!config) {
    const int code = config.error().code == Errc::malformed ? FLICK_EMALFORMED : FLICK_EINVAL;
    return fail(code, FLICK_ERROR_INVALID_ARGUMENT, std::string(fn) + ": " + config.error().describe());
  }
  if (auto valid = config->validate(); !valid)
    return fail(FLICK_EINVAL, FLICK_ERROR_INVALID_ARGUMENT, std::string(fn) + ": machine config: " + valid.error().describe());
  *out = std::move(*config);
  return FLICK_OK;
}

namespace {

using ojson = nlohmann::ordered_json;

const flick_machine_create_options kCreateDefaults = FLICK_MACHINE_CREATE_OPTIONS_INIT;
const flick_machine_filter kFilterDefaults = FLICK_MACHINE_FILTER_INIT;
const flick_machine_update_options kUpdateDefaults = FLICK_MACHINE_UPDATE_OPTIONS_INIT;
const flick_machine_clone_options kCloneDefaults = FLICK_MACHINE_CLONE_OPTIONS_INIT;
const flick_exec_options kExecDefaults = FLICK_EXEC_OPTIONS_INIT;

// A wait without a limit: ten years.
constexpr std::chrono::milliseconds kForever = std::chrono::hours(24 * 365 * 10);

bool valid_state(int s) { return s >= FLICK_MACHINE_CREATED && s <= FLICK_MACHINE_DESTROYED; }

// The machine behind `handle`, unless the handle is stale.
std::shared_ptr<Machine> any(flick_machine* handle, const char* fn, int* rc) {
  auto ref = machines().find(handle, fn, rc);
  return ref ? std::shared_ptr<Machine>(ref, ref->machine.get()) : nullptr;
}

// The same, and FLICK_ENOTFOUND when the machine was destroyed (by anyone, in any process).
std::shared_ptr<Machine> live(flick_machine* handle, const char* fn, int* rc) {
  auto m = any(handle, fn, rc);
  if (m && m->state() == MachineState::destroyed) {
    *rc = fail(FLICK_ENOTFOUND, FLICK_ERROR_MACHINE, std::string(fn) + ": machine " + m->id() + " was destroyed");
    return nullptr;
  }
  return m;
}

bool need_string(const char* s, const char* fn, const char* name, int* rc) {
  if (s && *s) return true;
  *rc = fail_invalid(std::string(fn) + ": " + name + " is NULL or empty");
  return false;
}

// A Result<void> of a machine call as a return code.
int done(const Result<void>& r) { return r ? ok() : fail(r.error(), FLICK_ERROR_MACHINE); }

flick_machine* add(std::unique_ptr<Machine> m, const Host& host) {
  return machines().add<flick_machine>(std::make_shared<MachineRef>(MachineRef{std::move(m), host.options().state_dir}));
}

int give_json(char** out, const ojson& j) {
  *out = give(j.dump());
  return ok();
}

}  // namespace

}  // namespace flick::capi

using namespace flick::capi;
using flick::Machine;
using flick::MachineState;

extern "C" {

const char* flick_machine_state_name(flick_machine_state state) {
  return valid_state(state) ? flick::to_string(MachineState(state)) : nullptr;
}

int flick_machine_create_options_init(flick_machine_create_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_MACHINE_CREATE_OPTIONS_VERSION, sizeof *opts, kCreateDefaults, fn);
  });
}

int flick_machine_create(flick_machine** out, flick_host* host, const flick_machine_create_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    flick_machine_create_options o = kCreateDefaults;
    if ((rc = read_options(&o, given, FLICK_MACHINE_CREATE_OPTIONS_VERSION, sizeof o, fn,
                           "flick_machine_create_options")) != FLICK_OK)
      return rc;
    if (o.region && *o.region && std::string_view(o.region) != "local")
      return fail_invalid(std::string(fn) + ": region: '" + o.region + "': this host has only region local");
    flick::MachineConfig config;
    if ((rc = parse_config(&config, o.config_json, fn)) != FLICK_OK) return rc;
    auto m = h->create(config, {}, str(o.name), str(o.app));
    if (!m) return fail(m.error(), FLICK_ERROR_MACHINE);
    if (!o.skip_launch) {
      if (auto started = (*m)->start(); !started) {
        (void)(*m)->destroy(true);  // nothing half-made, as flickd's create
        return fail(flick::Error(started.error()).with_context("machine " + (*m)->id() + " did not start and was destroyed"),
                    FLICK_ERROR_MACHINE);
      }
    }
    *out = add(std::move(m).value(), *h);
    return ok();
  });
}

int flick_machine_open(flick_machine** out, flick_host* host, const char* id_or_name, const char* app) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h || !need_string(id_or_name, fn, "id_or_name", &rc)) return rc;
    auto m = h->get(id_or_name, {}, str(app));
    if (!m) return fail(m.error(), FLICK_ERROR_MACHINE);
    *out = add(std::move(m).value(), *h);
    return ok();
  });
}

void flick_machine_free(flick_machine* machine) {
  if (!machine) return;
  guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    return machines().remove(machine, fn, &rc) ? ok() : rc;
  });
}

int flick_machine_get(char** out_json, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    return give_json(out_json, flick::fly::machine_json(*m, true));
  });
}

int flick_machine_id(char** out_id, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_id, fn, "out_id", &rc)) return rc;
    auto m = any(machine, fn, &rc);
    if (!m) return rc;
    *out_id = give(m->id());
    return ok();
  });
}

int flick_machine_get_state(flick_machine_state* out, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    auto m = any(machine, fn, &rc);
    if (!m) return rc;
    *out = flick_machine_state(m->state());
    return ok();
  });
}

int flick_machine_filter_init(flick_machine_filter* filter, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(filter, version, FLICK_MACHINE_FILTER_VERSION, sizeof *filter, kFilterDefaults, fn);
  });
}

int flick_machine_list(char** out_json, flick_host* host, const flick_machine_filter* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    flick_machine_filter f = kFilterDefaults;
    if (given && (rc = read_options(&f, given, FLICK_MACHINE_FILTER_VERSION, sizeof f, fn,
                                    "flick_machine_filter")) != FLICK_OK)
      return rc;
    flick::Host::ListFilter filter;
    filter.app = str(f.app);
    if (f.state_count && !f.states) return fail_invalid(std::string(fn) + ": states is NULL with state_count > 0");
    for (size_t i = 0; i < f.state_count; ++i) {
      const int s = raw_enum(f.states[i]);
      if (!valid_state(s))
        return fail_invalid(std::string(fn) + ": states[" + std::to_string(i) + "]: " +
                            std::to_string(s) + " is not a flick_machine_state");
      filter.states.push_back(MachineState(s));
    }
    if (filter.states.empty() && f.include_deleted)
      for (int s = FLICK_MACHINE_CREATED; s <= FLICK_MACHINE_DESTROYED; ++s) filter.states.push_back(MachineState(s));
    for (auto* kv = f.metadata; kv && *kv; kv += 2) {
      if (!kv[1]) return fail_invalid(std::string(fn) + ": metadata: key '" + kv[0] + "' has no value");
      filter.metadata[kv[0]] = kv[1];
    }
    auto list = h->list(filter);
    if (!list) return fail(list.error(), FLICK_ERROR_STORE);
    ojson out = ojson::array();
    for (const auto& m : *list) out.push_back(flick::fly::machine_json(*m, true));
    return give_json(out_json, out);
  });
}

int flick_machine_start(flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    return m ? done(m->start()) : rc;
  });
}

int flick_machine_stop(flick_machine* machine, int signo, int64_t timeout_ms) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    if (signo < 0) return fail_invalid(std::string(fn) + ": signal " + std::to_string(signo) + " is not a signal");
    flick::StopConfig how = m->config().stop_config;
    if (signo) how.signal = signo;
    if (timeout_ms >= 0) how.timeout = std::chrono::milliseconds(timeout_ms);
    return done(m->stop(how));
  });
}

int flick_machine_signal(flick_machine* machine, int signo) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    if (signo <= 0) return fail_invalid(std::string(fn) + ": signal " + std::to_string(signo) + " is not a signal");
    return done(m->signal(signo));
  });
}

int flick_machine_wait(flick_machine* machine, flick_machine_state state, int64_t timeout_ms) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!valid_state(state))
      return fail_invalid(std::string(fn) + ": state " + std::to_string(int(state)) + " is not a flick_machine_state");
    auto m = state == FLICK_MACHINE_DESTROYED ? any(machine, fn, &rc) : live(machine, fn, &rc);
    if (!m) return rc;
    auto timeout = timeout_ms < 0 ? kForever : std::chrono::milliseconds(timeout_ms);
    return done(m->wait(MachineState(state), timeout));
  });
}

int flick_machine_update_options_init(flick_machine_update_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_MACHINE_UPDATE_OPTIONS_VERSION, sizeof *opts, kUpdateDefaults, fn);
  });
}

int flick_machine_update(flick_machine* machine, const flick_machine_update_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    flick_machine_update_options o = kUpdateDefaults;
    if ((rc = read_options(&o, given, FLICK_MACHINE_UPDATE_OPTIONS_VERSION, sizeof o, fn,
                           "flick_machine_update_options")) != FLICK_OK)
      return rc;
    flick::MachineConfig config;
    if ((rc = parse_config(&config, o.config_json, fn)) != FLICK_OK) return rc;
    return done(m->update(config, {.skip_launch = o.skip_launch != 0, .current_version = o.current_version}));
  });
}

int flick_machine_clone_options_init(flick_machine_clone_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_MACHINE_CLONE_OPTIONS_VERSION, sizeof *opts, kCloneDefaults, fn);
  });
}

int flick_machine_clone(flick_machine** out, flick_host* host, flick_machine* source,
                        const flick_machine_clone_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    auto h = hosts().find(host, fn, &rc);
    if (!h) return rc;
    auto src = live(source, fn, &rc);
    if (!src) return rc;
    flick_machine_clone_options o = kCloneDefaults;
    if (given && (rc = read_options(&o, given, FLICK_MACHINE_CLONE_OPTIONS_VERSION, sizeof o, fn,
                                    "flick_machine_clone_options")) != FLICK_OK)
      return rc;
    flick::CloneOptions clone;
    clone.name = str(o.name);
    clone.skip_launch = o.skip_launch != 0;
    if (o.config_json) {
      flick::MachineConfig config;
      if ((rc = parse_config(&config, o.config_json, fn)) != FLICK_OK) return rc;
      clone.config = std::move(config);
    }
    auto m = h->clone(*src, std::move(clone));
    if (!m) return fail(m.error(), FLICK_ERROR_MACHINE);
    *out = add(std::move(m).value(), *h);
    return ok();
  });
}

int flick_machine_destroy(flick_machine* machine, int force) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = any(machine, fn, &rc);
    return m ? done(m->destroy(force != 0)) : rc;
  });
}

int flick_exec_options_init(flick_exec_options* opts, unsigned int version) {
  return guarded(__func__, [&](const char* fn) {
    return init_options(opts, version, FLICK_EXEC_OPTIONS_VERSION, sizeof *opts, kExecDefaults, fn);
  });
}

int flick_machine_exec(flick_exec_result* out, flick_machine* machine, const flick_exec_options* given) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    flick_exec_options o = kExecDefaults;
    if ((rc = read_options(&o, given, FLICK_EXEC_OPTIONS_VERSION, sizeof o, fn, "flick_exec_options")) != FLICK_OK)
      return rc;
    flick::ExecRequest request;
    for (auto* a = o.argv; a && *a; ++a) request.cmd.push_back(*a);
    if (request.cmd.empty()) return fail_invalid(std::string(fn) + ": argv: at least one argument is needed");
    if (o.stdin_len && !o.stdin_data) return fail_invalid(std::string(fn) + ": stdin_data is NULL with stdin_len > 0");
    if (o.stdin_data) request.stdin_data.assign(o.stdin_data, o.stdin_len);
    if (o.timeout_ms < 0) return fail_invalid(std::string(fn) + ": timeout_ms is negative");
    request.timeout = std::chrono::milliseconds(o.timeout_ms);
    for (auto* e = o.env; e && *e; ++e) {
      const std::string kv = *e;
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return fail_invalid(std::string(fn) + ": env: '" + kv + "' is not KEY=value");
      request.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    request.user = str(o.user);
    request.workdir = str(o.workdir);
    auto r = m->exec(request);
    if (!r) return fail(r.error(), FLICK_ERROR_MACHINE);
    flick_exec_result result{r->exit_code, r->exit_signal, nullptr, r->stdout_data.size(), nullptr, r->stderr_data.size(),
                             r->truncated ? 1 : 0};
    result.stdout_data = give(r->stdout_data);
    try {
      result.stderr_data = give(r->stderr_data);
    } catch (...) {
      flick_free(result.stdout_data);
      throw;
    }
    *out = result;
    return ok();
  });
}

void flick_exec_result_free(flick_exec_result* result) {
  if (!result) return;
  flick_free(result->stdout_data);
  flick_free(result->stderr_data);
  *result = flick_exec_result{};
}

int flick_machine_events(char** out_json, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto m = any(machine, fn, &rc);
    if (!m) return rc;
    ojson out = ojson::array();
    auto all = m->events();
    for (auto it = all.rbegin(); it != all.rend(); ++it) out.push_back(flick::fly::event_json(*it));
    return give_json(out_json, out);
  });
}

int flick_machine_logs(char** out, size_t* out_len, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out, fn, "out", &rc) || !clear_out(out_len, fn, "out_len", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    const auto ref = machines().find(machine, fn, &rc);
    if (!ref) return rc;
    std::string text;
    // A machine that never started has no log yet: that is an empty one.
    if (std::ifstream in(ref->state_dir / "machines" / m->id() / "console.log", std::ios::binary); in)
      text.assign(std::istreambuf_iterator<char>(in), {});
    *out = give(text);
    *out_len = text.size();
    return ok();
  });
}

int flick_machine_metadata(char** out_json, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    auto md = m->metadata();
    if (!md) return fail(md.error(), FLICK_ERROR_MACHINE);
    return give_json(out_json, ojson(*md));
  });
}

int flick_machine_metadata_get(char** out_value, flick_machine* machine, const char* key) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_value, fn, "out_value", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m || !need_string(key, fn, "key", &rc)) return rc;
    auto md = m->metadata();
    if (!md) return fail(md.error(), FLICK_ERROR_MACHINE);
    auto it = md->find(key);
    if (it == md->end())
      return fail(FLICK_ENOTFOUND, FLICK_ERROR_MACHINE,
                  std::string(fn) + ": machine " + m->id() + " has no metadata key '" + key + "'");
    *out_value = give(it->second);
    return ok();
  });
}

int flick_machine_metadata_set(flick_machine* machine, const char* key, const char* value) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m || !need_string(key, fn, "key", &rc)) return rc;
    if (!value) return fail_invalid(std::string(fn) + ": value is NULL");
    return done(m->set_metadata(key, value));
  });
}

int flick_machine_metadata_delete(flick_machine* machine, const char* key) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m || !need_string(key, fn, "key", &rc)) return rc;
    return done(m->delete_metadata(key));
  });
}

int flick_machine_lease_acquire(char** out_json, flick_machine* machine, uint32_t ttl_seconds, const char* description) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    if (ttl_seconds == 0) return fail_invalid(std::string(fn) + ": ttl_seconds: a lease lasts at least 1 second");
    auto l = m->acquire_lease(std::chrono::seconds(ttl_seconds), str(description));
    if (!l) return fail(l.error(), FLICK_ERROR_MACHINE);
    return give_json(out_json, flick::fly::lease_json(*l));
  });
}

int flick_machine_lease_get(char** out_json, flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    if (!clear_out(out_json, fn, "out_json", &rc)) return rc;
    auto m = live(machine, fn, &rc);
    if (!m) return rc;
    auto l = m->lease();
    if (!l) return fail(l.error(), FLICK_ERROR_MACHINE);
    return give_json(out_json, flick::fly::lease_json(*l));
  });
}

int flick_machine_lease_release(flick_machine* machine, const char* nonce) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    if (!m || !need_string(nonce, fn, "nonce", &rc)) return rc;
    return done(m->release_lease(nonce));
  });
}

int flick_machine_set_lease_nonce(flick_machine* machine, const char* nonce) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = any(machine, fn, &rc);
    if (!m) return rc;
    m->set_lease_nonce(str(nonce));
    return ok();
  });
}

int flick_machine_cordon(flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    return m ? done(m->cordon()) : rc;
  });
}

int flick_machine_uncordon(flick_machine* machine) {
  return guarded(__func__, [&](const char* fn) {
    int rc = FLICK_OK;
    auto m = live(machine, fn, &rc);
    return m ? done(m->uncordon()) : rc;
  });
}

}  // extern "C"
