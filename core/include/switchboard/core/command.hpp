#pragma once
// A command record on sb.commands.* (schemas/commands/command.json), as intake builds it and as
// workers read it back (backends may publish these directly, so workers validate again).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "switchboard/core/schema.hpp"

namespace sb {

struct SendCommand {
  std::string id, tenant, session, priority, created_at, to, text;
};

// A session lifecycle command (session.start|stop|restart|logout|delete): it travels on the
// high lane, keyed by tenant, so one worker executes a session's lifecycle in order.
struct SessionCommand {
  std::string id, tenant, session, action, created_at;  // action: start|stop|restart|logout|delete
};
inline constexpr const char* kLifecycleLane = "high";

inline const char* kLanes[] = {"high", "default", "low"};
std::string lane_topic_base(const std::string& lane);  // "sb.commands.<lane>"

nlohmann::json to_json(const SendCommand& c);
nlohmann::json to_json(const SessionCommand& c);
// Parses and validates a record (key must equal the tenant). Throws InvalidInput saying why.
SendCommand parse_command(std::string_view key, std::string_view value, const SchemaSet& schemas);
// Either kind of lane record; throws InvalidInput saying why.
struct LaneRecord {
  std::optional<SendCommand> send;
  std::optional<SessionCommand> lifecycle;
};
LaneRecord parse_lane_record(std::string_view key, std::string_view value, const SchemaSet& schemas);

}  // namespace sb
