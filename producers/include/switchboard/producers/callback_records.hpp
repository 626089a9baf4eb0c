#pragma once
// Provider callbacks, as intake writes them to sb.callbacks (schemas/callbacks/callback.json):
// one record per fact, keyed by tenant, whatever the provider's shape:
//   kind "status"   data {status (the provider's word), account?}
//   kind "receipt"  data {provider_message_id, status: sent|delivered|read|failed, error?}
//   kind "inbound"  data {provider_message_id, from, text}
// `id` is the provider's id of the fact (WAHA's event id; Cloud API's wamid + status), the key
// duplicates are recognised by. Pure parsing: no I/O, so it is unit-tested and fuzzed.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb {

struct CallbackRecord {
  std::string id, kind, provider, tenant, session, at;  // at: RFC 3339, the provider's time
  nlohmann::json data = nlohmann::json::object();
  nlohmann::json to_json() const;
};

// A WAHA webhook envelope {id, timestamp (ms), event, session, me, payload}.
struct EngineCallback {
  std::string id, event, session, at;
  std::optional<std::string> account;  // digits of me.id
  nlohmann::json payload;
};
// Throws InvalidInput (→ 400) when the body is not such an envelope.
EngineCallback parse_engine_callback(std::string_view body);
// The record for an envelope of a known session; nullopt for events we don't act on (message.any,
// PENDING acks, our own outgoing messages echoed as `message`).
std::optional<CallbackRecord> engine_record(const EngineCallback& cb, const std::string& tenant, const std::string& session);

// A Cloud API webhook body: each fact with the phone_number_id it belongs to (tenant/session
// are left empty for the caller to fill). Throws InvalidInput when it is not such a body.
struct CloudFact {
  std::string phone_number_id;
  CallbackRecord record;
};
std::vector<CloudFact> parse_cloud_callback(std::string_view body);

}  // namespace sb
