// Catch2's main for the integration tests, plus one thing: servers run in this process
// (IntakeServer, …) log to a file in the suite's log directory as well as to stderr, like the
// spawned ones, so the log scan (tests/security/scan_logs) reads what every server wrote.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

int main(int argc, char* argv[]) {
  if (const char* dir = std::getenv("SWITCHBOARD_TEST_LOG_DIR"); dir && *dir) {
    const auto path = std::filesystem::path(dir) / "in-process" / ("integration-" + std::to_string(getpid()) + ".log");
    std::filesystem::create_directories(path.parent_path());
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string());
    auto err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("in-process", spdlog::sinks_init_list{file, err});
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l in-process %v", spdlog::pattern_time_type::utc);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  return Catch::Session().run(argc, argv);
}
