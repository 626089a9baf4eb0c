#pragma once
// The event envelope published on sb.events (schemas/events/event.json), also the webhook body.
#include <nlohmann/json.hpp>
#include <string>

#include "switchboard/core/message_store.hpp"

namespace sb {

// message.sent / message.failed for a recorded outcome. The event id is derived from the
// message id and type, so a replayed command republishes the very same event id.
nlohmann::json message_event(const MessageOutcome& outcome);

}  // namespace sb
