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

nlohmann::json make_event(const std::string& type, const std::string& tenant, const std::optional<std::string>& session,
                          const std::string& occurred_at, nlohmann::json data, const std::string& id_seed) {
  return {{"id", uuid_from_name(id_seed + ":" + type)},
          {"type", type},
          {"tenant", tenant},
          {"session", session ? nlohmann::json(*session) : nlohmann::json(nullptr)},
          {"occurred_at", occurred_at},
          {"data", std::move(data)}};
}

namespace {
nlohmann::json nullable(const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }
}  // namespace

nlohmann::json session_status_event(const std::string& tenant, const std::string& session, const std::string& status,
                                    const std::optional<std::string>& previous, const std::optional<std::string>& reason,
                                    const std::optional<std::string>& raw_status, const std::optional<std::string>& account,
                                    const std::string& at) {
  nlohmann::json data = {{"status", status}, {"previous", nullable(previous)}, {"reason", nullable(reason)}};
  if (raw_status) data["raw_status"] = *raw_status;
  if (account) data["account"] = *account;
  return make_event("session.status", tenant, session, at, std::move(data), tenant + "/" + session + "/" + status + "/" + at);
}

nlohmann::json session_qr_event(const std::string& tenant, const std::string& session, const std::string& value,
                                const std::string& at) {
  return make_event("session.qr", tenant, session, at, {{"value", value}}, tenant + "/" + session + "/qr/" + value);
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
