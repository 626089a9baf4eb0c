#include "switchboard/workers/webhooks/endpoint_directory.hpp"

namespace sb {

EndpointDirectory::List EndpointDirectory::of(const std::string& tenant_id) {
  const auto now = std::chrono::steady_clock::now();
  uint64_t generation = 0;
  std::vector<std::string> tenants{tenant_id};
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(tenant_id);
    if (it != cache_.end() && now - it->second.loaded < ttl_) return it->second.endpoints;
    generation = invalidations_;
    // Lists past half their age come along, so the tenants' expiries fall together and a busy
    // dispatcher reads them in one query per TTL, not one per tenant (bench_pipeline: 0.036
    // endpoint queries per message with 50 tenants before).
    for (const auto& [tenant, entry] : cache_)
      if (tenant != tenant_id && now - entry.loaded >= ttl_ / 2 && tenants.size() < 1000) tenants.push_back(tenant);
  }
  // Outside the lock: a slow query doesn't stall other callers.
  auto lists = store_.list_many(tenants);
  std::lock_guard lock(mu_);
  if (cache_.size() > 100000) cache_.clear();
  List mine;
  for (auto& [tenant, endpoints] : lists) {
    auto list = std::make_shared<const std::vector<WebhookEndpoint>>(std::move(endpoints));
    if (tenant == tenant_id) mine = list;
    if (generation == invalidations_) cache_[tenant] = {now, list};
  }
  return mine;
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
