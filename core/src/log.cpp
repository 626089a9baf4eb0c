#include "switchboard/core/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <nlohmann/json.hpp>

namespace sb::log {
namespace {
std::atomic<bool> json_format{true};
}

void setup(const LogConfig& config, const std::string& component) {
  auto logger = spdlog::stderr_logger_mt("switchboard-" + component + "-" + std::to_string(rand()));
  json_format = config.format == "json";
  if (json_format)
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":")" + component + R"(",%v})",
                        spdlog::pattern_time_type::utc);
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l " + component + " %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(config.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void emit(spdlog::level::level_enum level, std::string_view event, std::initializer_list<Field> fields) {
  auto logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  std::string line;
  if (json_format) {
    line = "\"event\":" + nlohmann::json(event).dump();
    for (const auto& [k, v] : fields)
      line += "," + nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = std::string(event);
    for (const auto& [k, v] : fields) line += " " + std::string(k) + "=" + v;
  }
  logger->log(level, line);
}

}  // namespace sb::log
