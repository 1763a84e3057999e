// bindings_bench.py's C++ and C columns: get and list timed through the C++ API and through the
// C ABI, in one process, on the state directory the driver made. Prints
// {"C++": {"get": µs, "list": µs}, "C": {...}}: the mean per call.
//
//   native_calls STATE CACHE RUN KERNEL VMM APP ID MACHINES ITERATIONS
#include <flick/flick.h>
#include <flick/machine.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "native_calls: %s\n", what.c_str());
  std::exit(1);
}

void check(int rc, const char* what) {
  if (rc != FLICK_OK) {
    const flick_error* e = flick_error_last();
    die(std::string(what) + ": " + (e && e->message ? e->message : "failed"));
  }
}

// Mean µs per call of `call` over `n` calls, after one untimed call.
template <class F>
double mean_us(int n, F&& call) {
  call();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) call();
  std::chrono::duration<double, std::micro> spent = std::chrono::steady_clock::now() - t0;
  return spent.count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) die("usage: native_calls STATE CACHE RUN KERNEL VMM APP ID MACHINES ITERATIONS");
  const std::string app = argv[6], id = argv[7];
  const size_t machines = std::strtoul(argv[8], nullptr, 10);
  const int n = std::atoi(argv[9]);

  flick::HostOptions o;
  o.state_dir = argv[1];
  o.cache_dir = argv[2];
  o.run_dir = argv[3];
  o.kernel = argv[4];
  o.vmm_program = argv[5];
  o.network = flick::HostOptions::Networking::none;
  auto host = flick::Host::open(o);
  if (!host) die("Host::open: " + host.error().describe());
  flick::Host::ListFilter filter;
  filter.app = app;
  double cpp_get = mean_us(n, [&] {
    auto m = (*host)->get(id, {}, app);
    if (!m || (*m)->id() != id) die("Host::get did not find the machine");
  });
  double cpp_list = mean_us(n, [&] {
    auto all = (*host)->list(filter);
    if (!all || all->size() != machines) die("Host::list did not list every machine");
  });

  flick_host_options co = FLICK_HOST_OPTIONS_INIT;
  co.state_dir = argv[1];
  co.cache_dir = argv[2];
  co.run_dir = argv[3];
  co.kernel = argv[4];
  co.vmm_program = argv[5];
  co.networking = FLICK_NETWORKING_NONE;
  flick_host* h = nullptr;
  check(flick_host_open(&h, &co), "flick_host_open");
  double c_get = mean_us(n, [&] {
    flick_machine* m = nullptr;
    char* json = nullptr;
    check(flick_machine_open(&m, h, id.c_str(), app.c_str()), "flick_machine_open");
    check(flick_machine_get(&json, m), "flick_machine_get");
    flick_free(json);
    flick_machine_free(m);
  });
  flick_machine_filter cf = FLICK_MACHINE_FILTER_INIT;
  cf.app = app.c_str();
  double c_list = mean_us(n, [&] {
    char* json = nullptr;
    check(flick_machine_list(&json, h, &cf), "flick_machine_list");
    flick_free(json);
  });
  check(flick_host_close(h), "flick_host_close");

  std::printf("{\"C++\": {\"get\": %.3f, \"list\": %.3f}, \"C\": {\"get\": %.3f, \"list\": %.3f}}\n",
              cpp_get, cpp_list, c_get, c_list);
  return 0;
}
