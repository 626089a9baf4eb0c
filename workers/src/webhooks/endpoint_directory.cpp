#include "switchboard/workers/webhooks/endpoint_directory.hpp"

namespace sb {

EndpointDirectory::List EndpointDirectory::of(const std::string& tenant_id) {
  const auto now = std::chrono::steady_clock::now();
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(tenant_id);
    if (it != cache_.end() && now - it->second.loaded < ttl_) return it->second.endpoints;
    generation = invalidations_;
  }
  // Outside the lock: a slow query doesn't stall other callers.
  auto endpoints = std::make_shared<const std::vector<WebhookEndpoint>>(store_.list(tenant_id));
  std::lock_guard lock(mu_);
  if (cache_.size() > 100000) cache_.clear();
  if (generation == invalidations_) cache_[tenant_id] = {now, endpoints};
  return endpoints;
}

std::optional<WebhookEndpoint> EndpointDirectory::find(const std::string& tenant_id, const std::string& endpoint_id) {
  for (const auto& e : *of(tenant_id))
    if (e.id == endpoint_id) return e;
  return std::nullopt;
}

void EndpointDirectory::invalidate(const std::string& tenant_id) {
  std::lock_guard lock(mu_);
  cache_.erase(tenant_id);
  ++invalidations_;
}

}  // namespace sb
