#include "switchboard/core/command.hpp"

#include "switchboard/core/errors.hpp"

namespace sb {

std::string lane_topic_base(const std::string& lane) { return "sb.commands." + lane; }

nlohmann::json to_json(const SendCommand& c) {
  return {{"id", c.id},           {"type", "message.send"},   {"tenant", c.tenant},
          {"session", c.session}, {"created_at", c.created_at}, {"priority", c.priority},
          {"data", {{"to", c.to}, {"text", c.text}}}};
}

nlohmann::json to_json(const SessionCommand& c) {
  return {{"id", c.id},           {"type", "session." + c.action}, {"tenant", c.tenant},
          {"session", c.session}, {"created_at", c.created_at},    {"priority", kLifecycleLane},
          {"data", nlohmann::json::object()}};
}

namespace {
void require_tenant_key(std::string_view key, const std::string& tenant) {
  if (key != tenant)
    throw InvalidInput("record key '" + std::string(key) + "' is not the tenant id '" + tenant +
                       "': commands must be keyed by tenant so a tenant stays on one partition", "tenant");
}

SendCommand send_from(std::string_view key, const nlohmann::json& doc);
}  // namespace

LaneRecord parse_lane_record(std::string_view key, std::string_view value, const SchemaSet& schemas) {
  auto doc = parse_json(value);
  schemas.validate("commands/command", doc);
  LaneRecord r;
  const std::string type = doc["type"];
  if (type == "message.send") {
    r.send = send_from(key, doc);
    return r;
  }
  SessionCommand c{doc["id"], doc["tenant"], doc["session"], type.substr(std::string("session.").size()), doc["created_at"]};
  require_tenant_key(key, c.tenant);
  r.lifecycle = std::move(c);
  return r;
}

SendCommand parse_command(std::string_view key, std::string_view value, const SchemaSet& schemas) {
  auto r = parse_lane_record(key, value, schemas);
  if (!r.send) throw InvalidInput("expected a message.send command", "type");
  return std::move(*r.send);
}

namespace {
SendCommand send_from(std::string_view key, const nlohmann::json& doc) {
  SendCommand c;
  c.id = doc["id"];
  c.tenant = doc["tenant"];
  c.session = doc["session"];
  c.created_at = doc["created_at"];
  c.priority = doc.value("priority", "default");
  c.to = doc["data"]["to"];
  c.text = doc["data"]["text"];
  // Valid JSON, but not storable in PostgreSQL text and meaningless in a chat message: refused
  // here so it can never stall a batch of outcomes (review C2).
  if (c.text.find('\0') != std::string::npos)
    throw InvalidInput("data.text must not contain NUL characters (\\u0000)", "data.text");
  require_tenant_key(key, c.tenant);
  return c;
}
}  // namespace

}  // namespace sb
