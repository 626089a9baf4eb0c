#pragma once
// Provider callbacks, mounted on the intake server (no API key: each is verified by the
// provider's own signature, and nothing changes unless it verifies):
//   POST /v1/providers/engine/{node}/webhook   WAHA webhooks; X-Webhook-Hmac = hex HMAC-SHA512
//                                              of the raw body under the node's webhook_hmac_key
//   GET  /v1/providers/cloud_api/webhook       Meta's subscription handshake (hub.verify_token →
//                                              the raw hub.challenge)
//   POST /v1/providers/cloud_api/webhook       X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256
//                                              of the raw body under cloud_api.app_secret
// 401 on a missing or wrong signature, 400 on a malformed body (either way nothing is written),
// 200 only once every fact is durable on sb.callbacks (keyed by tenant), 503 otherwise (the
// provider retries). A fact for a session we don't know is acknowledged and dropped (logged).
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/session_store.hpp"
#include "switchboard/producers/callback_records.hpp"
#include "switchboard/producers/command_publisher.hpp"
#include "switchboard/producers/ttl_cache.hpp"

namespace sb {

inline constexpr const char* kCallbacksTopic = "sb.callbacks";

class CallbackApi {
 public:
  CallbackApi(const Config& config, pg::Pool& pool, CommandPublisher& publisher);
  void mount(http::Server& server);

 private:
  void engine(const http::Request& req, const http::Responder& respond);
  void cloud_verify(const http::Request& req, http::Response& res);
  void cloud(const http::Request& req, const http::Responder& respond);
  // Writes the records, then answers 200 (all acked) or 503.
  void publish_all(std::vector<CallbackRecord> records, const http::Responder& respond);

  // The session an engine's session name (on that node) or a Cloud API number belongs to, for
  // receipts and inbound messages; cached: three callbacks per message would otherwise be three
  // lookups per message. The cached owner carries no generation (statuses look it up fresh).
  std::optional<SessionStore::Owner> owner_of_engine_session(const std::string& node, const std::string& engine_session);
  std::optional<SessionStore::Owner> owner_of_number(const std::string& phone_number_id);
  // The node (with its HMAC key) from the registry, cached a few seconds: every ack is a callback.
  std::optional<EngineNode> node(const std::string& name);

  const Config& config_;
  SessionStore sessions_;
  CommandPublisher& publisher_;
  // Short-lived, so a session moved to another node (its callbacks then come from there) or
  // deleted is seen within seconds; unknown sessions are not cached.
  TtlCache owners_{5000};
  NodeRegistry nodes_;
  std::mutex nodes_mu_;
  std::map<std::string, std::pair<std::optional<EngineNode>, std::chrono::steady_clock::time_point>> node_cache_;
};

}  // namespace sb
