// Uses the installed C++ API: a VM with a missing kernel must fail with a clear error.
#include <flick/flick.h>
#include <flick/vm.h>

#include <cstdio>

int main() {
  flick::VmConfig cfg;
  cfg.kernel = "/nonexistent/vmlinuz";
  auto vm = flick::Vm::create(cfg);
  if (vm.ok()) return 1;
  std::printf("flick %d: %s (%s)\n", flick_version(), vm.error().describe().c_str(),
              flick::to_string(vm.error().code));
  return vm.error().code == flick::Errc::not_found || vm.error().code == flick::Errc::kvm_unavailable ? 0 : 1;
}
