#pragma once
// A tenant's webhook endpoints, cached for webhooks.endpoint_cache_ms: the dispatcher looks them
// up for every event, and endpoint changes may take that long to apply.
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "switchboard/core/webhook_store.hpp"

namespace sb {

class EndpointDirectory {
 public:
  EndpointDirectory(pg::Pool& pool, int ttl_ms) : store_(pool), ttl_(ttl_ms) {}
  // All of the tenant's endpoints, enabled or not (throws Unavailable when PostgreSQL is down).
  using List = std::shared_ptr<const std::vector<WebhookEndpoint>>;
  List of(const std::string& tenant_id);
  std::optional<WebhookEndpoint> find(const std::string& tenant_id, const std::string& endpoint_id);
  // Forget a tenant's list now (this process just changed one of its endpoints).
  void invalidate(const std::string& tenant_id);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point loaded;
    List endpoints;
  };
  WebhookStore store_;
  std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;
  uint64_t invalidations_ = 0;  // a list read before an invalidation is not cached after it
};

}  // namespace sb
