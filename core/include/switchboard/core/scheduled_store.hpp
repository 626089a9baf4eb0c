#pragma once
// Scheduled sends in PostgreSQL: a message with send_at is stored 'scheduled' (not published);
// schedulers release the due ones to their lane; a tenant may cancel one until it is released.
//
// Why the release holds its row locks while publishing: the rows are selected FOR UPDATE SKIP
// LOCKED (so replicas never take the same rows), published, and turned 'queued' in the same
// transaction once Kafka acknowledged them. A cancel that arrives meanwhile waits for that
// commit and then sees 'queued' (409): a message can't be both cancelled and sent. A scheduler
// that dies mid-publish rolls back: the rows are 'scheduled' again and the next turn publishes
// them again with the same message id, which the lane dedupes (claim_for_send accepts a due
// 'scheduled' row as well as a 'queued' one, and a 'cancelled' one is never sent).
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/command.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

class ScheduledStore {
 public:
  explicit ScheduledStore(pg::Pool& pool) : pool_(pool) {}

  // Stores `message` as 'scheduled' for send_at (RFC 3339, already validated). A repeated
  // (tenant, idempotency_key) is not stored again: the outcome names the earlier message.
  // Throws Unavailable (PostgreSQL down) or Error.
  InsertOutcome schedule(const NewMessage& message, const std::string& send_at);

  struct CancelResult {
    enum class Kind { Cancelled, TooLate, NotFound };
    Kind kind = Kind::NotFound;
    std::string status;  // TooLate: where the message is now
  };
  // 'scheduled' → 'cancelled' (with history), for the tenant's own message only. Waits at most
  // lock_wait_ms for a scheduler publishing that very message, then throws Unavailable.
  CancelResult cancel(const std::string& tenant_id, const std::string& id, int lock_wait_ms);

  // One scheduler turn: claims up to `limit` due messages (oldest send_at first), calls
  // publish(commands), which returns the ids Kafka acknowledged, and marks those 'queued' in the
  // same transaction. The rest stay 'scheduled' for the next turn. Returns how many were claimed.
  // The transaction may stay idle for at most tx_idle_ms (a stalled scheduler's locks go).
  using Publish = std::function<std::vector<std::string>(const std::vector<SendCommand>&)>;
  std::size_t release_due(int limit, int tx_idle_ms, const Publish& publish);

  // How many messages wait, and how late the oldest due one is (seconds; 0 if none is due).
  struct Backlog {
    long long scheduled = 0;
    double oldest_due_s = 0;
  };
  Backlog backlog();

 private:
  pg::Pool& pool_;
};

}  // namespace sb
