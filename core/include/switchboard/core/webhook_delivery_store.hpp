#pragma once
// The durable side of webhook delivery: the retry schedule (webhook_deliveries) and the attempt
// log (webhook_attempts). Writes are batched where the dispatcher produces many at once.
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/event_store.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

struct ScheduledDelivery {
  int64_t id = 0;  // set by the store
  std::string endpoint_id, tenant_id, event_id, event_type;
  std::optional<std::string> session;
  std::string body;
  int attempts = 0;       // failed attempts so far
  int due_in_s = 0;       // when scheduling: delay from now
  bool ordered = false;   // the endpoint's ordering is per_session: held back behind earlier rows
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

struct Rescheduled {
  int64_t id = 0;
  int attempts = 0;
  int due_in_s = 0;
};

// Everything one batch of delivery outcomes changes, applied in one transaction with one
// multi-row statement per kind (a single statement runs in autocommit instead).
struct DeliveryChanges {
  std::vector<AttemptRecord> attempts;
  std::vector<ScheduledDelivery> schedule;  // parked, in this order (ordering relies on it)
  std::vector<Rescheduled> reschedule;
  std::vector<int64_t> complete;
  std::vector<StoredEvent> events;  // consumed events kept for replay (EventStore's table)
  bool empty() const {
    return attempts.empty() && schedule.empty() && reschedule.empty() && complete.empty() && events.empty();
  }
  int statements() const {
    return !attempts.empty() + !schedule.empty() + !reschedule.empty() + !complete.empty() + !events.empty();
  }
};

class WebhookDeliveryStore {
 public:
  explicit WebhookDeliveryStore(pg::Pool& pool) : pool_(pool) {}
  // Parks deliveries for later; one already parked (or in flight) for the same (endpoint, event)
  // is kept as is. Returns how many were newly parked.
  std::size_t schedule(const std::vector<ScheduledDelivery>& deliveries);
  // Claims up to `limit` due deliveries for `lease_s` seconds; concurrent claimers never get the
  // same row, and a row whose lease ran out (its claimer died) is due again.
  // For ordered rows only the oldest of its (endpoint, session) is ever claimed.
  std::vector<ScheduledDelivery> claim_due(int limit, int lease_s);
  // Is a delivery of this (endpoint, session) parked? (A per_session endpoint's new events wait behind it.)
  bool has_pending(const std::string& endpoint_id, const std::optional<std::string>& session);
  void apply(const DeliveryChanges& changes);
  void record_attempts(const std::vector<AttemptRecord>& attempts);
  // Deletes up to `limit` attempt-log rows older than `days`; returns how many.
  std::size_t purge_attempts_older_than(int days, int limit);
  // Parked deliveries right now (for metrics and tests).
  std::size_t pending_count();
  // Newest first, scoped by tenant; outcome filters when set.
  std::vector<AttemptRecord> attempts(const std::string& tenant_id, const std::string& endpoint_id, int limit,
                                      const std::optional<std::string>& outcome);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
