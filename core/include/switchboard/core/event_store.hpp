#pragma once
// Events the webhook dispatcher consumed, kept (webhooks.event_retention_days) so that an
// endpoint's events can be replayed from a point in time and one event can be redelivered.
// Every read is scoped by tenant: another tenant's event is indistinguishable from a missing one.
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/pg.hpp"

namespace sb {

struct StoredEvent {
  std::string id, tenant_id, type;
  std::optional<std::string> session;
  std::string occurred_at;  // RFC 3339
  std::string body;         // the envelope exactly as delivered
};

class EventStore {
 public:
  explicit EventStore(pg::Pool& pool) : pool_(pool) {}
  // Idempotent on the event id (a replayed record is recorded once). One multi-row statement
  // (autocommit: no BEGIN/COMMIT round trips).
  void record(const std::vector<StoredEvent>& events);
  // The same statement inside the caller's transaction (the dispatcher stores a batch's events
  // together with its delivery changes).
  static void insert(pqxx::transaction_base& tx, const std::vector<StoredEvent>& events);
  // That statement's text and its six array parameters ($1..$6 shifted by `first - 1`), for a
  // caller that joins it with its own writes in one statement.
  struct InsertRows {
    std::string ids, tenants, types, sessions, occurred, bodies;
  };
  static InsertRows insert_rows(const std::vector<StoredEvent>& events);
  static std::string insert_sql(int first);
  std::optional<StoredEvent> get(const std::string& tenant_id, const std::string& event_id);
  // The tenant's events with occurred_at >= since (RFC 3339), oldest first, at most `limit`.
  std::vector<StoredEvent> since(const std::string& tenant_id, const std::string& since, int limit);
  // Deletes up to `limit` events recorded more than `days` ago; returns how many.
  std::size_t purge_older_than(int days, int limit);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
