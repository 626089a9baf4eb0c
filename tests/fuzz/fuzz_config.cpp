// The YAML config (parse_config): every refusal must be a ConfigError naming what is wrong.
// No environment overrides (the fuzzer's own environment must not steer it).
#include "fuzz_support.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"

namespace {
std::optional<std::string> no_env(const std::string&) { return std::nullopt; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    const auto c = sb::parse_config(std::string(sbfuzz::text(data, size)), "fuzz.yaml", &no_env);
    if (c.kafka.brokers.empty() || c.postgres.url.empty()) __builtin_trap();
    (void)c.webhooks.allowed_cidrs();
  } catch (const sb::ConfigError&) {
  }
  return 0;
}
