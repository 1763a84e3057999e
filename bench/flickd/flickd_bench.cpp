// flickd's overhead: the same operations through a real flickd (HTTP over its Unix socket) and
// through the C++ API (flick::Host in this process), on one state directory in the same run.
//
//   GET machine   GET /v1/apps/bench/machines/{id}   vs  Host::get(id)
//   list          GET /v1/apps/bench/machines        vs  Host::list({app}), 100 created machines
//   start         POST .../start + GET .../wait?state=started   vs  start() + wait(started)
//   stop          POST .../stop                      vs  stop()
//
// start and stop boot a stopped machine running `sleep` on a real Linux guest: they need a
// /dev/kvm that runs Linux and FLICK_BENCH_KERNEL (a bzImage or vmlinux) with
// FLICK_BENCH_KERNEL_MODULES (its lib/modules/<release>); without them they report why with
// SkipWithError. Created machines use the test guest as their kernel (creating needs no KVM).
//
// Each benchmark times every request by hand and reports p50/p99 (µs) and req/s as counters;
// after the run a table gives flickd / C++ for each operation. The HTTP client is libcurl with
// one easy handle kept for the whole run, so requests reuse the connection as a real client's do.
//
// FLICKD (the daemon's path) overrides the one this build made.
#include <flick/machine.h>

#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace flick;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kListed = 100;
// Timed starts (and stops) per side: a fixed count, since each also costs an untimed stop (or
// start) that manual time does not see, and an emulated boot takes seconds.
constexpr int kStarts = 5;
constexpr const char* kApp = "bench";

// The latencies of one benchmark's run, as its counters and the closing table show them.
struct Figures {
  double p50_us = 0, p99_us = 0, per_second = 0;
};
// "op" -> "C++" | "flickd" -> the figures of that benchmark's last (largest) run.
std::map<std::string, std::map<std::string, Figures>> g_figures;

// Records each iteration's time (manual timing) and, at the end, the counters.
class Samples {
 public:
  explicit Samples(benchmark::State& state) : state_(state) {}
  void add(Clock::duration d) {
    double s = std::chrono::duration<double>(d).count();
    state_.SetIterationTime(s);
    seconds_.push_back(s);
  }
  void report(const std::string& op, const std::string& side) {
    if (seconds_.empty()) return;
    std::sort(seconds_.begin(), seconds_.end());
    auto at = [&](double q) { return seconds_[std::min(seconds_.size() - 1, size_t(q * double(seconds_.size())))] * 1e6; };
    double total = 0;
    for (double s : seconds_) total += s;
    Figures f{at(0.50), at(0.99), double(seconds_.size()) / total};
    state_.counters["p50_us"] = f.p50_us;
    state_.counters["p99_us"] = f.p99_us;
    state_.counters["req/s"] = benchmark::Counter(double(seconds_.size()), benchmark::Counter::kIsRate);
    g_figures[op][side] = f;
  }

 private:
  benchmark::State& state_;
  std::vector<double> seconds_;
};

// HTTP/1.1 to flickd's Unix socket through one libcurl easy handle (its connection is kept).
class Http {
 public:
  explicit Http(const fs::path& socket) : curl_(curl_easy_init()) {
    curl_easy_setopt(curl_, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Http::append);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body_);
    headers_ = curl_slist_append(nullptr, "Content-Type: application/json");
  }
  ~Http() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // The status of `method path` (0 when the request itself failed: why() says why); body() is its body.
  long call(const char* method, const std::string& path, const std::string& json = {}) {
    body_.clear();
    std::string url = "http://localhost" + path;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    if (std::string_view(method) == "GET") {
      curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
      curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, nullptr);
    } else {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, json.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, long(json.size()));
      curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    }
    CURLcode rc = curl_easy_perform(curl_);
    if (rc != CURLE_OK) {
      body_ = curl_easy_strerror(rc);
      return 0;
    }
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    return status;
  }
  const std::string& body() const { return body_; }

 private:
  static size_t append(char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
  }
  CURL* curl_;
  curl_slist* headers_ = nullptr;
  std::string body_;
};

// A flickd on `state`, serving only its Unix socket; stopped with SIGTERM.
class Daemon {
 public:
  static std::unique_ptr<Daemon> spawn(const fs::path& program, const fs::path& dir) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return nullptr;
    auto d = std::unique_ptr<Daemon>(new Daemon);
    d->socket = dir / "api.sock";
    std::vector<std::string> args = {program.string(), "--state-dir", (dir / "state").string(),
                                     "--socket", d->socket.string(), "--no-network"};
    std::vector<std::string> env = {"XDG_RUNTIME_DIR=" + (dir / "run").string(),
                                    "FLICK_HOME=" + (dir / "cache").string(), "FLICK_VMM=" FLICK_VMM_PROGRAM,
                                    "FLICK_KERNEL=" FLICK_TESTGUEST_PVH};
    auto ours = [&](std::string_view e) {
      return std::any_of(env.begin(), env.begin() + 4,
                         [&](const std::string& mine) { return e.substr(0, e.find('=')) == mine.substr(0, mine.find('=')); });
    };
    for (char** e = environ; *e; ++e)
      if (!ours(*e)) env.push_back(*e);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    for (auto& e : env) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    int rc = posix_spawn(&d->pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      std::fprintf(stderr, "flickd_bench: cannot run %s: %s\n", argv[0], std::strerror(rc));
      return nullptr;
    }
    // It prints "flickd: serving unix:PATH" once it answers.
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(out[0]);
    if (line.rfind("flickd: serving unix:", 0) != 0) {
      std::fprintf(stderr, "flickd_bench: flickd did not come up (it printed '%s')\n", line.c_str());
      return nullptr;
    }
    return d;
  }
  ~Daemon() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }

  pid_t pid = -1;
  fs::path socket;

 private:
  Daemon() = default;
};

// What every benchmark shares: the scratch directory, the Host, the machines and the daemon.
struct Bench {
  fs::path dir;
  std::unique_ptr<Host> host;
  std::vector<std::string> listed;   // kListed created machines
  std::unique_ptr<Machine> runner;   // the start/stop machine, stopped between runs
  std::string no_runner;             // why there is none
  std::unique_ptr<Daemon> daemon;
  std::unique_ptr<Http> http;
};
Bench* g_bench = nullptr;

// A benchmark that could not do its work: reported, and the run exits non-zero (start/stop
// where no Linux guest can run only report why).
bool g_failed = false;
void fail(benchmark::State& state, const std::string& why) {
  g_failed = true;
  state.SkipWithError(why.c_str());
}

std::string machine_path(const std::string& id) { return std::string("/v1/apps/") + kApp + "/machines/" + id; }

// Why start/stop cannot run here, or nothing when they can.
std::optional<std::string> no_linux_guest() {
  const char* dev = std::getenv("FLICK_KVM_DEVICE");
  std::string kvm = dev && *dev ? dev : "/dev/kvm";
  int fd = ::open(kvm.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return "no usable " + kvm + " (" + std::strerror(errno) + "): start/stop need KVM that runs Linux";
  ::close(fd);
  const char* k = std::getenv("FLICK_BENCH_KERNEL");
  const char* mods = std::getenv("FLICK_BENCH_KERNEL_MODULES");
  if (!k || !*k || !mods || !*mods)
    return std::string("start/stop need FLICK_BENCH_KERNEL and FLICK_BENCH_KERNEL_MODULES (a Linux guest kernel)");
  return std::nullopt;
}

// A stopped machine running `sleep` on the Linux kernel of FLICK_BENCH_KERNEL.
Result<std::unique_ptr<Machine>> make_runner(Host& host, const std::string& image) {
  MachineConfig c;
  c.image = image;
  c.init.exec = {"sleep", "3600"};
  c.guest.kernel = std::getenv("FLICK_BENCH_KERNEL");
  c.guest.kernel_modules = std::getenv("FLICK_BENCH_KERNEL_MODULES");
  c.start_timeout = 10min;  // emulated boots in the test host take seconds
  c.stop_config.signal = SIGTERM;
  FLICK_TRY_ASSIGN(auto m, host.create(c, {}, "runner", kApp));
  FLICK_TRY(m->start());  // the first boot warms the page cache; then it is stopped
  FLICK_TRY(m->wait(MachineState::started, 10min));
  FLICK_TRY(m->stop());
  return m;
}

int set_up(Bench& b) {
  char tmpl[] = "/tmp/flickd-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return std::perror("flickd_bench: mkdtemp"), 1;
  b.dir = tmpl;
  std::string layout = (b.dir / "layout").string();
  std::string make_image = "python3 " FLICK_SOURCE_DIR "/scripts/busybox-image.py " + layout + " >/dev/null";
  if (std::system(make_image.c_str()) != 0) return std::fprintf(stderr, "flickd_bench: %s failed\n", make_image.c_str()), 1;
  std::string image = "oci:" + layout + ":latest";

  HostOptions o;
  o.state_dir = b.dir / "state";
  o.cache_dir = b.dir / "cache";
  o.run_dir = b.dir / "run" / "flick";  // flickd's too: $XDG_RUNTIME_DIR/flick
  o.kernel = FLICK_TESTGUEST_PVH;
  o.vmm_program = FLICK_VMM_PROGRAM;
  o.network = HostOptions::Networking::none;
  auto host = Host::open(o);
  if (!host) return std::fprintf(stderr, "flickd_bench: opening the host: %s\n", host.error().describe().c_str()), 1;
  b.host = std::move(*host);
  if (auto a = b.host->create_app(kApp); !a)
    return std::fprintf(stderr, "flickd_bench: creating app %s: %s\n", kApp, a.error().describe().c_str()), 1;

  MachineConfig c;
  c.image = image;
  for (int i = 0; i < kListed; ++i) {
    auto m = b.host->create(c, {}, "m" + std::to_string(i), kApp);
    if (!m) return std::fprintf(stderr, "flickd_bench: creating a machine: %s\n", m.error().describe().c_str()), 1;
    b.listed.push_back((*m)->id());
  }
  if (auto why = no_linux_guest()) {
    b.no_runner = *why;
  } else if (auto r = make_runner(*b.host, image); !r) {
    b.no_runner = "the start/stop machine: " + r.error().describe();
  } else {
    b.runner = std::move(*r);
  }

  const char* program = std::getenv("FLICKD");
  b.daemon = Daemon::spawn(program && *program ? program : FLICKD_PROGRAM, b.dir);
  if (!b.daemon) return 1;
  b.http = std::make_unique<Http>(b.daemon->socket);
  return 0;
}

void tear_down(Bench& b) {
  b.http.reset();
  b.daemon.reset();
  if (b.runner) (void)b.runner->destroy(true);
  b.runner.reset();
  b.host.reset();
  std::error_code ec;
  fs::remove_all(b.dir, ec);
}

// One GET through flickd, checked; false (and the benchmark failed) otherwise.
bool fetch(benchmark::State& state, const std::string& path, Samples& samples) {
  auto t0 = Clock::now();
  long status = g_bench->http->call("GET", path);
  samples.add(Clock::now() - t0);
  if (status == 200) return true;
  fail(state, "GET " + path + ": " + std::to_string(status) + " " + g_bench->http->body());
  return false;
}

void BM_GetMachine_Cpp(benchmark::State& state) {
  Samples samples(state);
  const std::string& id = g_bench->listed[0];
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto m = g_bench->host->get(id, {}, kApp);
    samples.add(Clock::now() - t0);
    if (!m) return fail(state, m.error().describe());
    benchmark::DoNotOptimize(m);
  }
  samples.report("GET machine", "C++");
}

void BM_GetMachine_Flickd(benchmark::State& state) {
  Samples samples(state);
  const std::string path = machine_path(g_bench->listed[0]);
  for (auto _ : state)
    if (!fetch(state, path, samples)) return;
  samples.report("GET machine", "flickd");
}

void BM_List100_Cpp(benchmark::State& state) {
  Samples samples(state);
  Host::ListFilter filter;
  filter.app = kApp;
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto all = g_bench->host->list(filter);
    samples.add(Clock::now() - t0);
    if (!all || all->size() < kListed) return fail(state, "Host::list did not list the 100 machines");
  }
  samples.report("list (100)", "C++");
}

void BM_List100_Flickd(benchmark::State& state) {
  Samples samples(state);
  const std::string path = std::string("/v1/apps/") + kApp + "/machines";
  for (auto _ : state)
    if (!fetch(state, path, samples)) return;
  samples.report("list (100)", "flickd");
}

// start/stop: each iteration times one half and does the other untimed, so every start
// begins from `stopped` and every stop from `started`.
enum class Half { start, stop };

Result<void> cpp_start(Machine& m) {
  FLICK_TRY(m.start());
  return m.wait(MachineState::started, 10min);
}

Result<void> flickd_call(const char* method, const std::string& path, const std::string& body = {}) {
  long status = g_bench->http->call(method, path, body);
  if (status == 200) return {};
  return make_error(Errc::io, std::string(method) + " " + path + ": " + std::to_string(status) + " " +
                                  g_bench->http->body());
}

Result<void> flickd_start(const std::string& id) {
  FLICK_TRY(flickd_call("POST", machine_path(id) + "/start", "{}"));
  return flickd_call("GET", machine_path(id) + "/wait?state=started&timeout=60");
}

Result<void> flickd_stop(const std::string& id) { return flickd_call("POST", machine_path(id) + "/stop", "{}"); }

template <Half timed, bool through_flickd>
void BM_StartStop(benchmark::State& state) {
  if (!g_bench->runner) return state.SkipWithError(g_bench->no_runner.c_str());
  Machine& m = *g_bench->runner;
  auto start = [&] { return through_flickd ? flickd_start(m.id()) : cpp_start(m); };
  auto stop = [&] { return through_flickd ? flickd_stop(m.id()) : m.stop(); };
  Samples samples(state);
  for (auto _ : state) {
    if (timed == Half::stop)
      if (auto r = start(); !r) return fail(state, r.error().describe());
    auto t0 = Clock::now();
    auto r = timed == Half::start ? start() : stop();
    samples.add(Clock::now() - t0);
    if (!r) return fail(state, r.error().describe());
    if (timed == Half::start)
      if (auto s = stop(); !s) return fail(state, s.error().describe());
  }
  samples.report(timed == Half::start ? "start" : "stop", through_flickd ? "flickd" : "C++");
}

void print_ratios() {
  if (g_figures.empty()) return;
  std::printf("\n%-12s %28s %28s %18s\n", "", "C++ API", "flickd", "flickd / C++");
  std::printf("%-12s %9s %9s %8s  %9s %9s %8s  %8s %8s\n", "operation", "p50 ms", "p99 ms", "req/s", "p50 ms",
              "p99 ms", "req/s", "p50", "req/s");
  for (const char* op : {"GET machine", "list (100)", "start", "stop"}) {
    auto it = g_figures.find(op);
    if (it == g_figures.end() || !it->second.count("C++") || !it->second.count("flickd")) continue;
    const Figures& c = it->second["C++"];
    const Figures& d = it->second["flickd"];
    std::printf("%-12s %9.3f %9.3f %8.1f  %9.3f %9.3f %8.1f  %8.2f %8.2f\n", op, c.p50_us / 1e3, c.p99_us / 1e3,
                c.per_second, d.p50_us / 1e3, d.p99_us / 1e3, d.per_second, d.p50_us / c.p50_us,
                d.per_second / c.per_second);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Bench bench;
  g_bench = &bench;
  int rc = set_up(bench);
  if (rc == 0) {
    for (auto* b : {benchmark::RegisterBenchmark("GetMachine/cpp", BM_GetMachine_Cpp),
                    benchmark::RegisterBenchmark("GetMachine/flickd", BM_GetMachine_Flickd),
                    benchmark::RegisterBenchmark("List100/cpp", BM_List100_Cpp),
                    benchmark::RegisterBenchmark("List100/flickd", BM_List100_Flickd)})
      b->UseManualTime();
    for (auto* b : {benchmark::RegisterBenchmark("Start/cpp", BM_StartStop<Half::start, false>),
                    benchmark::RegisterBenchmark("Start/flickd", BM_StartStop<Half::start, true>),
                    benchmark::RegisterBenchmark("Stop/cpp", BM_StartStop<Half::stop, false>),
                    benchmark::RegisterBenchmark("Stop/flickd", BM_StartStop<Half::stop, true>)})
      b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(kStarts);
    benchmark::RunSpecifiedBenchmarks();
    print_ratios();
  }
  tear_down(bench);
  benchmark::Shutdown();
  curl_global_cleanup();
  return rc != 0 ? rc : g_failed ? 1 : 0;
}
