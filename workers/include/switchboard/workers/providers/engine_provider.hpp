#pragma once
// Sends through a WAHA-shaped engine node: POST {node}/api/sendText {"session","chatId","text"}
// with X-Api-Key. Written against WAHA's REST API as documented for 2024.x–2025.x (Core and
// Plus): the response is the engine's raw message object, its id taken from "id" (string or
// {"_serialized"}) or "key.id". A 422 (session not WORKING on the engine) is retryable and
// certainly not sent. WAHA has no idempotency key and no lookup by our id: reconcile() answers
// Unknown, so an interrupted send is failed as uncertain (worker.on_uncertain), never repeated.
// Every call carries the placement's generation (X-Switchboard-Generation); 404/409 and an
// unreachable node send it back to its claim (SendResult::reroute): the session may have moved.
#include <optional>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/secret_box.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

class EngineProvider : public Provider {
 public:
  EngineProvider(const EngineConfig& config, SecretBox secrets);
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override;
  std::string name() const override { return "engine"; }

  // "+15551234567" → "15551234567@c.us" (WAHA's chat id of a phone number).
  static std::string chat_id(const std::string& e164);

 private:
  // The node to call: the registry's row from the claim, credentials opened (config nodes' from config).
  std::optional<EngineNode> node_of(const SessionRoute& route, std::string& error) const;

  const EngineConfig& config_;
  SecretBox secrets_;
  AsyncHttpClient client_;
};

}  // namespace sb
