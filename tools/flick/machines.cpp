// Machines over the store (machines.h): each call is the Host's or the Machine's own.
#include "machines.h"

#include "machine_options.h"
#include "store_cmd.h"

#include <cstdlib>

namespace flick::cli {

namespace {

MachineView view_of(const Machine& m, bool events) {
  MachineView v;
  v.id = m.id();
  v.name = m.name();
  v.app = m.app();
  v.region = m.region();
  v.instance_id = m.instance_id();
  v.state = m.state();
  v.config = m.config();
  v.image_digest = m.image().image_digest;
  v.image_entrypoint = m.image().config.entrypoint;
  v.image_cmd = m.image().config.cmd;
  v.created_at = m.created_at();
  v.version = m.version();
  v.cordoned = m.cordoned();
  if (const auto& net = m.network()) {
    v.guest_address = net->guest_address;
    v.host_address = net->host_address;
  }
  v.last_exit = m.last_exit();
  if (events) v.events = m.events();
  v.json = machine_json(m, events);
  return v;
}

class LocalMachine final : public MachineRef {
 public:
  explicit LocalMachine(std::unique_ptr<Machine> m) : m_(std::move(m)) {}

  const std::string& id() const override { return m_->id(); }
  Result<MachineView> read(bool events) override { return view_of(*m_, events); }
  void set_lease_nonce(const std::string& nonce) override { m_->set_lease_nonce(nonce); }
  Result<void> start() override { return m_->start(); }
  Result<void> stop(std::optional<int> signal, std::optional<std::chrono::milliseconds> timeout) override {
    return m_->stop(stop_config(signal, timeout));
  }
  Result<void> restart(std::optional<int> signal, std::optional<std::chrono::milliseconds> timeout) override {
    FLICK_TRY(m_->stop(stop_config(signal, timeout)));
    return m_->start();
  }
  Result<void> signal(int signo) override { return m_->signal(signo); }
  Result<void> wait(MachineState state, std::chrono::milliseconds timeout) override { return m_->wait(state, timeout); }
  Result<void> destroy(bool force) override { return m_->destroy(force); }
  Result<void> update(const MachineConfig& config, const UpdateOptions& how) override { return m_->update(config, how); }
  Result<std::map<std::string, std::string>> metadata() override { return m_->metadata(); }
  Result<void> set_metadata(const std::string& key, const std::string& value) override {
    return m_->set_metadata(key, value);
  }
  Result<void> delete_metadata(const std::string& key) override { return m_->delete_metadata(key); }
  Result<void> cordon(bool cordoned) override { return cordoned ? m_->cordon() : m_->uncordon(); }
  Result<Lease> acquire_lease(std::chrono::seconds ttl, const std::string& description) override {
    return m_->acquire_lease(ttl, description);
  }
  Result<Lease> lease() override { return m_->lease(); }
  Result<void> release_lease(const std::string& nonce) override { return m_->release_lease(nonce); }
  Result<ExecResult> exec(const ExecRequest& request) override { return m_->exec(request); }
  Result<std::vector<ProcessInfo>> processes() override { return m_->processes(); }
  Machine* local() override { return m_.get(); }

 private:
  // The machine's stop_config with what is given, or none (the machine's own).
  std::optional<StopConfig> stop_config(std::optional<int> signal, std::optional<std::chrono::milliseconds> timeout) {
    if (!signal && !timeout) return std::nullopt;
    StopConfig how = m_->config().stop_config;
    if (signal) how.signal = *signal;
    if (timeout) how.timeout = *timeout;
    return how;
  }

  std::unique_ptr<Machine> m_;
};

class LocalMachines final : public Machines {
 public:
  explicit LocalMachines(std::unique_ptr<Host> host) : host_(std::move(host)) {}

  Result<void> check_app(const std::string& app) override { return cli::check_app(*host_, app); }

  Result<std::unique_ptr<MachineRef>> get(const std::string& id_or_name, const std::string& scope) override {
    FLICK_TRY_ASSIGN(auto m, find_machine(*host_, id_or_name, scope));
    return std::unique_ptr<MachineRef>(std::make_unique<LocalMachine>(std::move(m)));
  }

  Result<std::vector<MachineView>> list(const std::string& app, const std::vector<MachineState>& states) override {
    Host::ListFilter filter;
    filter.app = app;
    filter.states = states;
    FLICK_TRY_ASSIGN(auto machines, host_->list(filter));
    std::vector<MachineView> out;
    for (const auto& m : machines) out.push_back(view_of(*m, false));
    return out;
  }

  Result<MachineView> create(const MachineConfig& config, const std::string& name, const std::string& app) override {
    // A name in use fails before the image is fetched and volumes are made.
    if (!name.empty())
      if (auto existing = host_->get(name, {}, app); existing && (*existing)->name() == name)
        return make_error(Errc::exists,
                          "machine name " + name + " is taken in app " + app + " (by machine " + (*existing)->id() + ")");
    FLICK_TRY(check_image(*host_, config));
    FLICK_TRY(ensure_volumes(*host_, config, app));
    FLICK_TRY_ASSIGN(auto made, host_->create(config, {}, name, app));
    return view_of(*made, false);
  }

  Result<MachineView> clone(MachineRef& source, const CloneOptions& how) override {
    FLICK_TRY_ASSIGN(auto made, host_->clone(*source.local(), how));
    return view_of(*made, false);
  }

  Result<AppInfo> create_app(const std::string& name, const std::string& org) override {
    return host_->create_app(name, org);
  }
  Result<std::vector<AppInfo>> list_apps() override { return host_->list_apps(); }
  Result<void> destroy_app(const std::string& name, bool force) override { return host_->destroy_app(name, force); }

 private:
  std::unique_ptr<Host> host_;
};

}  // namespace

std::string& api_endpoint() {
  static std::string endpoint;
  return endpoint;
}

Result<std::unique_ptr<Machines>> open_machines(const HostOptions& options) {
  if (!api_endpoint().empty()) {
    const char* token = std::getenv("FLICK_API_TOKEN");
    FLICK_TRY_ASSIGN(auto client, ApiClient::open(api_endpoint(), token ? token : ""));
    return api_machines(std::move(client));
  }
  FLICK_TRY_ASSIGN(auto host, open_host(options));
  return std::unique_ptr<Machines>(std::make_unique<LocalMachines>(std::move(host)));
}

}  // namespace flick::cli
