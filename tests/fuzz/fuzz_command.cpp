// Lane command records (sb.commands.*) as a worker reads them: parse_command(key, value).
// Input: "<key>\n<value>"; no newline means an empty key.
#include "fuzz_support.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/errors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  auto in = sbfuzz::text(data, size);
  std::string_view key;
  if (const auto nl = in.find('\n'); nl != std::string_view::npos) {
    key = in.substr(0, nl);
    in.remove_prefix(nl + 1);
  }
  try {
    const auto c = sb::parse_command(key, in, sbfuzz::schemas());
    if (c.tenant != key || c.text.find('\0') != std::string::npos) __builtin_trap();
    // A worker republishes it as is: the round trip must parse back to the same command.
    const auto again = sb::parse_command(key, sb::to_json(c).dump(), sbfuzz::schemas());
    if (again.id != c.id || again.text != c.text || again.to != c.to || again.priority != c.priority) __builtin_trap();
  } catch (const sb::InvalidInput&) {
  }
  return 0;
}
