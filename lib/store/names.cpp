// The names of the machine enums, signals and Go durations (see names.h).
#include "store/names.h"

#include <array>
#include <cstdint>
#include <limits>

namespace flick {

const char* to_string(MachineState state) noexcept {
  switch (state) {
    case MachineState::created: return "created";
    case MachineState::starting: return "starting";
    case MachineState::started: return "started";
    case MachineState::stopping: return "stopping";
    case MachineState::stopped: return "stopped";
    case MachineState::failed: return "failed";
    case MachineState::destroying: return "destroying";
    case MachineState::destroyed: return "destroyed";
  }
  return "unknown";
}

const char* to_string(RestartPolicy policy) noexcept {
  switch (policy) {
    case RestartPolicy::no: return "no";
    case RestartPolicy::always: return "always";
    case RestartPolicy::on_failure: return "on-failure";
  }
  return "unknown";
}

const char* to_string(MachineEventType type) noexcept {
  switch (type) {
    case MachineEventType::launch: return "launch";
    case MachineEventType::start: return "start";
    case MachineEventType::exit: return "exit";
    case MachineEventType::stop: return "stop";
    case MachineEventType::restart: return "restart";
    case MachineEventType::destroy: return "destroy";
    case MachineEventType::update: return "update";
  }
  return "unknown";
}

namespace store {

namespace {

// Every value of an enum whose values are 0..last, looked up by its to_string() name.
template <class E>
std::optional<E> by_name(std::string_view name, E last) {
  for (int i = 0; i <= static_cast<int>(last); ++i)
    if (name == to_string(static_cast<E>(i))) return static_cast<E>(i);
  return std::nullopt;
}

// Linux's (x86, arm64) signals 1..31.
constexpr std::array<const char*, 32> kSignals = {
    nullptr, "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",  "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",  "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"};
constexpr int kMaxSignal = 64;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
char upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

Error not_a_duration(std::string_view text) {
  return make_error(Errc::invalid_argument,
                    "\"" + std::string(text) + "\" is not a duration (like \"5s\", \"1m30s\" or \"500ms\")");
}

}  // namespace

std::optional<MachineState> machine_state_from_string(std::string_view name) {
  return by_name(name, MachineState::destroyed);
}

std::optional<RestartPolicy> restart_policy_from_string(std::string_view name) {
  return by_name(name, RestartPolicy::on_failure);
}

std::optional<MachineEventType> machine_event_type_from_string(std::string_view name) {
  return by_name(name, MachineEventType::update);
}

const char* signal_name(int signo) noexcept {
  if (signo < 1 || signo >= static_cast<int>(kSignals.size())) return nullptr;
  return kSignals[static_cast<size_t>(signo)];
}

std::optional<int> signal_from_string(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (is_digit(text.front())) {
    int n = 0;
    for (char c : text) {
      if (!is_digit(c)) return std::nullopt;
      n = n * 10 + (c - '0');
      if (n > kMaxSignal) return std::nullopt;
    }
    if (n < 1) return std::nullopt;
    return n;
  }
  std::string name;
  for (char c : text) name += upper(c);
  if (name.rfind("SIG", 0) != 0) name = "SIG" + name;
  for (size_t i = 1; i < kSignals.size(); ++i)
    if (name == kSignals[i]) return static_cast<int>(i);
  return std::nullopt;
}

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const std::string_view original = text;
  if (!text.empty() && text.front() == '-')
    return make_error(Errc::invalid_argument, "\"" + std::string(original) + "\" is negative");
  if (text == "0") return std::chrono::nanoseconds{0};
  if (text.empty()) return not_a_duration(original);
  auto too_long = [&] {
    return make_error(Errc::invalid_argument, "\"" + std::string(original) + "\" is too long");
  };
  uint64_t total = 0;
  while (!text.empty()) {
    // [digits][.digits] unit, as Go: at least one digit on either side of the point.
    uint64_t whole = 0;
    bool pre = false;
    while (!text.empty() && is_digit(text.front())) {
      if (whole > (kMax - 9) / 10) return too_long();
      whole = whole * 10 + static_cast<uint64_t>(text.front() - '0');
      text.remove_prefix(1);
      pre = true;
    }
    uint64_t frac = 0;
    double scale = 1;
    bool post = false;
    if (!text.empty() && text.front() == '.') {
      text.remove_prefix(1);
      while (!text.empty() && is_digit(text.front())) {
        if (frac <= (kMax - 9) / 10) {  // digits past int64's precision are dropped, as Go
          frac = frac * 10 + static_cast<uint64_t>(text.front() - '0');
          scale *= 10;
        }
        text.remove_prefix(1);
        post = true;
      }
    }
    if (!pre && !post) return not_a_duration(original);
    size_t n = 0;
    while (n < text.size() && !is_digit(text[n]) && text[n] != '.') ++n;
    std::string_view unit = text.substr(0, n);
    text.remove_prefix(n);
    uint64_t ns = 0;
    if (unit == "ns") ns = 1;
    else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") ns = 1000;  // µs, μs
    else if (unit == "ms") ns = 1000'000;
    else if (unit == "s") ns = 1000'000'000;
    else if (unit == "m") ns = 60 * 1000'000'000ull;
    else if (unit == "h") ns = 3600 * 1000'000'000ull;
    else return not_a_duration(original);
    if (whole > kMax / ns) return too_long();
    uint64_t v = whole * ns;
    if (frac > 0) {
      v += static_cast<uint64_t>(static_cast<double>(frac) * (static_cast<double>(ns) / scale));
      if (v > kMax) return too_long();
    }
    if (v > kMax - total) return too_long();
    total += v;
  }
  return std::chrono::nanoseconds{static_cast<int64_t>(total)};
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t count = d.count();
  std::string sign = count < 0 ? "-" : "";
  uint64_t ms = count < 0 ? 0 - static_cast<uint64_t>(count) : static_cast<uint64_t>(count);
  if (ms == 0) return "0s";
  if (ms < 1000) return sign + std::to_string(ms) + "ms";
  std::string out = sign;
  uint64_t h = ms / 3600'000, m = ms / 60'000 % 60;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  out += std::to_string(ms / 1000 % 60);
  if (uint64_t frac = ms % 1000; frac != 0) {
    std::string digits = std::to_string(frac + 1000).substr(1);  // three digits
    while (digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  return out + "s";
}

}  // namespace store
}  // namespace flick
