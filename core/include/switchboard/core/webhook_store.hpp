#pragma once
// Tenants' webhook endpoints (PostgreSQL). Every call is scoped by tenant: another tenant's
// endpoint is indistinguishable from a missing one.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/pg.hpp"

namespace sb {

struct WebhookEndpoint {
  std::string id, tenant_id, url;
  std::vector<std::string> events;
  std::string secret;
  std::optional<std::string> previous_secret, previous_secret_expires_at;
  bool enabled = true;
  std::optional<std::string> disabled_reason;
  std::string ordering = "none";
  std::string created_at, updated_at;
};

struct WebhookEndpointChange {
  std::optional<std::string> url;
  std::optional<std::vector<std::string>> events;
  std::optional<bool> enabled;
  std::optional<std::string> ordering;
  std::optional<std::string> new_secret;  // rotation: the current secret stays valid for a while
  int rotation_window_s = 86400;
};

// Event types and patterns an endpoint may subscribe to.
bool valid_event_pattern(const std::string& pattern);
bool event_matches(const std::string& pattern, const std::string& type);

class WebhookStore {
 public:
  explicit WebhookStore(pg::Pool& pool) : pool_(pool) {}
  WebhookEndpoint create(const WebhookEndpoint& endpoint);  // id, timestamps filled in
  std::vector<WebhookEndpoint> list(const std::string& tenant_id);
  // Several tenants' lists in one query (every tenant asked has an entry, empty if it has none).
  std::map<std::string, std::vector<WebhookEndpoint>> list_many(const std::vector<std::string>& tenant_ids);
  std::optional<WebhookEndpoint> get(const std::string& tenant_id, const std::string& id);
  std::optional<WebhookEndpoint> update(const std::string& tenant_id, const std::string& id,
                                        const WebhookEndpointChange& change);
  bool remove(const std::string& tenant_id, const std::string& id);

  // --- for the dispatcher (not tenant-facing) ---
  // Endpoint health: failing_since is set by the first failure and cleared by a success.
  // Returns the ids (among `failed`) that have now failed for longer than disable_after_s.
  std::vector<std::string> record_health(const std::vector<std::string>& failed, const std::vector<std::string>& succeeded,
                                         int disable_after_s);
  // Disables an enabled endpoint (reason kept for the API); nullopt if it was not enabled.
  // `before` runs first with the endpoint as it was (to emit the event), inside the row lock.
  std::optional<WebhookEndpoint> disable(const std::string& id, const std::string& reason,
                                         const std::function<void(const WebhookEndpoint&)>& before);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
