// Logging: one injectable sink, printf-style, level from FLICK_LOG (error|warn|info|debug).
#pragma once

#include <flick/export.h>

#include <functional>
#include <string_view>

namespace flick::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

using Sink = std::function<void(Level, std::string_view)>;

// Replaces the sink (default: "flick: <level>: message" lines on stderr). Thread-safe.
FLICK_API void set_sink(Sink sink);
FLICK_API void set_level(Level level);
FLICK_API bool enabled(Level level);
FLICK_API void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace flick::log

#define FLICK_LOG_AT(lvl, ...) \
  do { if (::flick::log::enabled(lvl)) ::flick::log::write(lvl, __VA_ARGS__); } while (0)
#define LOG_ERROR(...) FLICK_LOG_AT(::flick::log::Level::error, __VA_ARGS__)
#define LOG_WARN(...) FLICK_LOG_AT(::flick::log::Level::warn, __VA_ARGS__)
#define LOG_INFO(...) FLICK_LOG_AT(::flick::log::Level::info, __VA_ARGS__)
#define LOG_DEBUG(...) FLICK_LOG_AT(::flick::log::Level::debug, __VA_ARGS__)
