#include "switchboard/core/events.hpp"

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"

namespace sb {

nlohmann::json message_event(const MessageOutcome& o) {
  const std::string type = o.status == "sent" ? "message.sent" : "message.failed";
  nlohmann::json data = {{"message_id", o.id}, {"to", o.to}};
  if (o.status == "sent") data["provider_message_id"] = o.provider_message_id.value_or("");
  else data["error"] = o.error.value_or("unknown error");
  if (o.status != "sent" && o.reason) data["reason"] = *o.reason;
  return {{"id", uuid_from_name(o.id + ":" + type)},
          {"type", type},
          {"tenant", o.tenant_id},
          {"session", o.session},
          {"occurred_at", o.at},
          {"data", data}};
}

StoredEvent parse_event_record(std::string_view value, const SchemaSet& schemas) {
  const auto event = parse_json(value);
  schemas.validate("events/event", event);
  StoredEvent e;
  e.id = event["id"].get<std::string>();
  e.tenant_id = event["tenant"].get<std::string>();
  if (!MessageStore::valid_id(e.tenant_id)) throw InvalidInput("event 'tenant' must be a tenant id (uuid)", "tenant");
  e.type = event["type"].get<std::string>();
  if (event["session"].is_string()) e.session = event["session"].get<std::string>();
  e.occurred_at = event["occurred_at"].get<std::string>();
  // Else PostgreSQL refuses the row and the event is delivered but not replayable.
  if (!rfc3339_in_range(e.occurred_at))
    throw InvalidInput("event 'occurred_at' '" + e.occurred_at + "' is not a valid RFC 3339 time", "occurred_at");
  e.body = std::string(value);
  return e;
}

}  // namespace sb
