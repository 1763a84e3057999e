// Fly's Machines API objects as JSON, for both clients of the store that speak it: the `flick`
// CLI (--json) and flickd. One rendering, so that both print the same Machine, App, Volume,
// Lease, Event and ProcessStat (the fields are those of https://fly.io/docs/machines/api/).
#pragma once

#include <flick/machine.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace flick::fly {

// UTC, RFC 3339 to the second: "2026-01-02T03:04:05Z".
std::string rfc3339(std::chrono::system_clock::time_point t);

// A machine state by its name ("started"); none for anything else.
std::optional<MachineState> parse_state(const std::string& s);

// Fly's Machine object: id, name, state, region, instance_id, version, private_ip, config,
// image_ref, created_at, cordoned (and, with `events`, events[] newest first, as Fly's
// GET /machines/{id}), plus flick's `app`.
nlohmann::ordered_json machine_json(const Machine& m, bool events);
// Fly's event: type, status, timestamp (Unix ms), request{exit_event, detail}.
nlohmann::ordered_json event_json(const MachineEvent& e);
// Fly's Volume: id, name, state, size_gb, attached_machine_id; plus `app` and `path`.
nlohmann::ordered_json volume_json(const Volume& v);
// Fly's App: id, name, organization{slug}, machine_count, volume_count, created_at.
nlohmann::ordered_json app_json(const AppInfo& a);
// Fly's ProcessStat: pid, stime (Unix seconds), rtime (seconds), command, directory, cpu
// (percent), rss (bytes), listen_sockets[{proto, address}].
nlohmann::ordered_json process_json(const ProcessInfo& p);
// Fly's lease object: nonce, expires_at (Unix seconds), owner, description, version.
nlohmann::ordered_json lease_json(const Lease& l);

}  // namespace flick::fly
