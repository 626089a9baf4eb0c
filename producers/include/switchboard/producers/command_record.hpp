#pragma once
// The Kafka record value of a send command, written directly: the same bytes as
// to_json(command).dump() (keys in nlohmann's sorted order, its escaping), without building a
// JSON tree first — that tree and its dump were ~34,000 instructions of a ~258,000-instruction
// send in callgrind. Strings with a byte outside printable ASCII plus the escapes below take
// the nlohmann path, so its UTF-8 handling (and its error on invalid UTF-8) stays the one rule.
// tests/unit/test_request_parsing.cpp checks the two agree.
#include <string>

#include "switchboard/core/command.hpp"

namespace sb {

std::string send_command_record(const SendCommand& command);

}  // namespace sb
