#include "switchboard/core/command.hpp"

#include "switchboard/core/errors.hpp"

namespace sb {

std::string lane_topic_base(const std::string& lane) { return "sb.commands." + lane; }

nlohmann::json to_json(const SendCommand& c) {
  return {{"id", c.id},           {"type", "message.send"},   {"tenant", c.tenant},
          {"session", c.session}, {"created_at", c.created_at}, {"priority", c.priority},
          {"data", {{"to", c.to}, {"text", c.text}}}};
}

SendCommand parse_command(std::string_view key, std::string_view value, const SchemaSet& schemas) {
  auto doc = parse_json(value);
  schemas.validate("commands/command", doc);
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
  if (key != c.tenant)
    throw InvalidInput("record key '" + std::string(key) + "' is not the tenant id '" + c.tenant +
                       "': commands must be keyed by tenant so a tenant stays on one partition", "tenant");
  return c;
}

}  // namespace sb
