// The text forms of machine values in Fly's schema: state, restart policy and event type
// names (their to_string() is in <flick/machine.h>), signal names and Go durations.
#pragma once

#include <flick/machine.h>
#include <flick/result.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace flick::store {

// The inverses of to_string(): exact names only ("on-failure", not "on_failure" or "").
std::optional<MachineState> machine_state_from_string(std::string_view name);
std::optional<RestartPolicy> restart_policy_from_string(std::string_view name);
std::optional<MachineEventType> machine_event_type_from_string(std::string_view name);

// "SIGTERM" for 15: Linux's names of signals 1..31; nullptr for other numbers.
const char* signal_name(int signo) noexcept;
// "SIGTERM", "TERM" (any case) or "15" -> 15; nullopt for anything else or a number
// outside 1..64.
std::optional<int> signal_from_string(std::string_view text);

// A duration as Go's time.ParseDuration reads it ("5s", "1m30s", "1.5h", "500ms", "0"), but
// never negative. Errc::invalid_argument saying what is wrong (not naming the field).
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);
// As Go's Duration.String() writes it: "0s", "500ms", "5s", "1.5s", "1m30s", "1h0m0s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace flick::store
