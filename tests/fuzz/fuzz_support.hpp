#pragma once
// Shared by the libFuzzer targets: the project's own schemas, loaded once per process.
// A target lets only the parser's documented refusals (sb::InvalidInput, sb::ConfigError)
// pass; any other exception escapes to libFuzzer and is reported as a crash, because in
// production it would be a 500 or a dead-lettered-for-the-wrong-reason record.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "switchboard/core/schema.hpp"

namespace sbfuzz {

inline const sb::SchemaSet& schemas() {
  static const sb::SchemaSet set(SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  return set;
}

inline std::string_view text(const uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace sbfuzz
