#pragma once
// The durable side of webhook delivery: the retry schedule (webhook_deliveries) and the attempt
// log (webhook_attempts). Writes are batched where the dispatcher produces many at once.
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/pg.hpp"

namespace sb {

struct ScheduledDelivery {
  int64_t id = 0;  // set by the store
  std::string endpoint_id, tenant_id, event_id, event_type;
  std::optional<std::string> session;
  std::string body;
  int attempts = 0;       // failed attempts so far
  int due_in_s = 0;       // when scheduling: delay from now
};

struct AttemptRecord {
  std::string endpoint_id, tenant_id, event_id, event_type;
  int attempt = 1;
  std::string outcome;  // succeeded | failed | dead_lettered
  std::optional<int> http_status;
  std::optional<std::string> error, response_excerpt;
  int latency_ms = 0;
  std::string at;       // RFC 3339 (filled by the store when listing)
};

class WebhookDeliveryStore {
 public:
  explicit WebhookDeliveryStore(pg::Pool& pool) : pool_(pool) {}
  // Parks deliveries for later; one already parked for the same (endpoint, event) is kept as is.
  void schedule(const std::vector<ScheduledDelivery>& deliveries);
  // Claims up to `limit` due deliveries for `lease_s` seconds; concurrent claimers never get the
  // same row, and a row whose lease ran out (its claimer died) is due again.
  std::vector<ScheduledDelivery> claim_due(int limit, int lease_s);
  void complete(int64_t id);                                   // delivered, gone or dead-lettered
  void reschedule(int64_t id, int attempts, int due_in_s);     // failed again: back in the queue
  void record_attempts(const std::vector<AttemptRecord>& attempts);
  // Newest first, scoped by tenant; outcome filters when set.
  std::vector<AttemptRecord> attempts(const std::string& tenant_id, const std::string& endpoint_id, int limit,
                                      const std::optional<std::string>& outcome);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
