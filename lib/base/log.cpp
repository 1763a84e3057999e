#include "base/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace flick::log {
namespace {

Level level_from_env() {
  const char* v = std::getenv("FLICK_LOG");
  if (!v) return Level::warn;
  if (!std::strcmp(v, "error")) return Level::error;
  if (!std::strcmp(v, "info")) return Level::info;
  if (!std::strcmp(v, "debug")) return Level::debug;
  return Level::warn;
}

std::atomic<int> g_level{static_cast<int>(level_from_env())};
std::mutex g_mu;
Sink g_sink;

const char* name(Level l) {
  switch (l) {
    case Level::error: return "error";
    case Level::warn: return "warning";
    case Level::info: return "info";
    case Level::debug: return "debug";
  }
  return "?";
}

}  // namespace

void set_sink(Sink sink) {
  std::lock_guard lk(g_mu);
  g_sink = std::move(sink);
}

void set_level(Level level) { g_level = static_cast<int>(level); }
bool enabled(Level level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void write(Level level, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::lock_guard lk(g_mu);
  if (g_sink) {
    g_sink(level, buf);
  } else {
    std::fprintf(stderr, "flick: %s: %s\n", name(level), buf);
  }
}

}  // namespace flick::log
