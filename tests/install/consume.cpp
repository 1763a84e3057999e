// The installed C++ headers compile on their own, and the C++ API stays exported beside the
// versioned C ABI: a Fly machine config parsed by the installed library.
#include <flick/machine.h>

#include <cstdio>
#include <string>

int main() {
  auto good = flick::MachineConfig::from_json(R"({"image":"alpine:3.19","guest":{"cpus":2}})");
  if (!good.ok() || good->guest.cpus != 2) return 1;
  auto bad = flick::MachineConfig::from_json(R"({"image":"alpine:3.19","guest":{"cpuz":2}})");
  if (bad.ok() || bad.error().describe().find("guest.cpuz") == std::string::npos) return 1;
  std::printf("C++ API: %s\n", bad.error().describe().c_str());
  return 0;
}
