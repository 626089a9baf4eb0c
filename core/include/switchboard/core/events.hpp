#pragma once
// The event envelope published on sb.events (schemas/events/event.json), also the webhook body.
#include <nlohmann/json.hpp>
#include <string>

#include "switchboard/core/event_store.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/schema.hpp"

namespace sb {

// message.sent / message.failed for a recorded outcome. The event id is derived from the
// message id and type, so a replayed command republishes the very same event id.
nlohmann::json message_event(const MessageOutcome& outcome);

// A record on sb.events as the webhook dispatcher reads it (anyone may publish there): parsed,
// schema-checked, tenant a uuid, occurred_at in range, so what it returns can be stored for
// replay. body is the record as given. Throws InvalidInput saying why.
StoredEvent parse_event_record(std::string_view value, const SchemaSet& schemas);

}  // namespace sb
