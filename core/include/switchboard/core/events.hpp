#pragma once
// The event envelope published on sb.events (schemas/events/event.json), also the webhook body.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "switchboard/core/event_store.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/schema.hpp"

namespace sb {

// message.sent / message.failed for a recorded outcome. The event id is derived from the
// message id and type, so a replayed command republishes the very same event id.
nlohmann::json message_event(const MessageOutcome& outcome);

// Any other event: `id_seed` names the logical event (same seed, same id: a replay or a
// duplicate callback republishes the very same event id, and consumers dedupe on it).
nlohmann::json make_event(const std::string& type, const std::string& tenant, const std::optional<std::string>& session,
                          const std::string& occurred_at, nlohmann::json data, const std::string& id_seed);

// session.status {status, previous, reason, raw_status, account}; one id per (session, status, at).
nlohmann::json session_status_event(const std::string& tenant, const std::string& session, const std::string& status,
                                    const std::optional<std::string>& previous, const std::optional<std::string>& reason,
                                    const std::optional<std::string>& raw_status, const std::optional<std::string>& account,
                                    const std::string& at);
// session.qr {value}: one per QR shown.
nlohmann::json session_qr_event(const std::string& tenant, const std::string& session, const std::string& value,
                                const std::string& at);

// A record on sb.events as the webhook dispatcher reads it (anyone may publish there): parsed,
// schema-checked, tenant a uuid, occurred_at in range, so what it returns can be stored for
// replay. body is the record as given. Throws InvalidInput saying why.
StoredEvent parse_event_record(std::string_view value, const SchemaSet& schemas);

}  // namespace sb
