#include "switchboard/core/events.hpp"

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

}  // namespace sb
