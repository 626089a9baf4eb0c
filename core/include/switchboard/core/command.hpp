#pragma once
// A command record on sb.commands.* (schemas/commands/command.json), as intake builds it and as
// workers read it back (backends may publish these directly, so workers validate again).
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "switchboard/core/schema.hpp"

namespace sb {

struct SendCommand {
  std::string id, tenant, session, priority, created_at, to, text;
};

inline const char* kLanes[] = {"high", "default", "low"};
std::string lane_topic_base(const std::string& lane);  // "sb.commands.<lane>"

nlohmann::json to_json(const SendCommand& c);
// Parses and validates a record (key must equal the tenant). Throws InvalidInput saying why.
SendCommand parse_command(std::string_view key, std::string_view value, const SchemaSet& schemas);

}  // namespace sb
