#pragma once
// Structured logs: one line per event, `event` plus named fields (tenant, session, message_id…).
// JSON lines by default, key=value text for humans. Never pass secrets as fields.
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "switchboard/core/config.hpp"

namespace sb::log {

using Field = std::pair<std::string_view, std::string>;

// Installs the process-wide logger (to stderr; stdout stays free for CLI output).
void setup(const LogConfig& config, const std::string& component);
void emit(spdlog::level::level_enum level, std::string_view event, std::initializer_list<Field> fields);

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { emit(spdlog::level::debug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { emit(spdlog::level::info, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { emit(spdlog::level::warn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { emit(spdlog::level::err, e, f); }

}  // namespace sb::log
