#pragma once
// Tenant-scoped management of webhook endpoints, mounted on the intake server:
//   POST   /v1/webhooks                 201 with id and secret (generated when absent)
//   GET    /v1/webhooks                 the tenant's endpoints (secrets are not listed)
//   GET    /v1/webhooks/{id}
//   PATCH  /v1/webhooks/{id}            url, events, enabled, ordering, rotate_secret
//   DELETE /v1/webhooks/{id}            204
//   GET    /v1/webhooks/{id}/attempts   delivery attempts, newest first (?limit=1..1000, default 50;
//                                       ?status=succeeded|failed|dead_lettered)
//   POST   /v1/webhooks/{id}/replay     {"since": RFC 3339}: the tenant's recorded events since then
//                                       that the endpoint subscribes to are scheduled again, oldest
//                                       first (at most webhooks.replay_max_events); 202
//                                       {"scheduled", "truncated"}; 409 when the endpoint is disabled
//   POST   /v1/events/{id}/redeliver    one recorded event scheduled again for every enabled endpoint
//                                       subscribed to its type; 202 {"scheduled", "endpoints"}
// Replay and redeliver only park rows in webhook_deliveries; the dispatcher's retry poller sends them.
// URLs must be http(s) and must not resolve to loopback/private/link-local/metadata addresses
// (webhooks.allow_cidrs excepted); unknown event types are refused.
#include "switchboard/core/http_server.hpp"

#include <functional>
#include <optional>
#include <string>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"

namespace sb {

class WebhookApi {
 public:
  // Returns the caller's tenant id, or nullopt after writing the 401 itself.
  using Authenticate = std::function<std::optional<std::string>(const http::Request&, http::Response&)>;
  WebhookApi(const Config& config, pg::Pool& pool, const SchemaSet& schemas, Authenticate authenticate);
  void mount(http::Server& server);

 private:
  void create(const http::Request& req, http::Response& res);
  void list(const http::Request& req, http::Response& res);
  void get(const http::Request& req, http::Response& res);
  void update(const http::Request& req, http::Response& res);
  void remove(const http::Request& req, http::Response& res);
  void attempts(const http::Request& req, http::Response& res);
  void replay(const http::Request& req, http::Response& res);
  void redeliver(const http::Request& req, http::Response& res);
  // Empty when acceptable, else why not (for a 422 on field "url").
  std::string url_problem(const std::string& url) const;

  const Config& config_;
  const SchemaSet& schemas_;
  WebhookStore store_;
  EventStore events_;
  WebhookDeliveryStore deliveries_;
  AddressGuard guard_;
  Authenticate authenticate_;
};

}  // namespace sb
