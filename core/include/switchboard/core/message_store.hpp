#pragma once
// Messages and their status history. Writes are batched (one transaction per batch, unnest()
// arrays): PostgreSQL commits a few thousand transactions/s but inserts >100k rows/s in batches.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "switchboard/core/command.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

struct NewMessage {
  std::string id;
  std::string tenant_id;
  std::string session;
  std::string to;
  std::string text;
  std::string priority;
  std::optional<std::string> idempotency_key;
};

struct InsertOutcome {
  std::string id;       // the new id, or the earlier message's id for a repeated idempotency key
  bool created = false;
  std::string status;
  std::string priority;
};

struct StatusChange {
  std::string status;
  std::string at;
  std::optional<std::string> detail;
};

struct MessageView {
  std::string id, session, to, text, priority, status, created_at, updated_at;
  std::optional<std::string> provider_message_id, error, idempotency_key;
  std::optional<std::string> send_at;  // scheduled sends only
  std::vector<StatusChange> history;
};

// What a worker learned from the provider for one command.
struct MessageOutcome {
  std::string id, tenant_id, session, to, text, priority;
  std::string status;  // sent | failed
  std::optional<std::string> provider_message_id, error;
  std::string at;      // RFC 3339
  // failed only: why, as a word clients can switch on (provider_rejected, provider_failed,
  // uncertain, …); stored as the prefix of `error` ("uncertain: …").
  std::optional<std::string> reason;
};

// What the database already knows of a command's message (for replays).
struct KnownMessage {
  std::string status;
  std::optional<std::string> provider_message_id, error;
  std::string updated_at;  // RFC 3339: when the status was recorded
};

// A worker's claim to send a command (the durable "sending" mark, taken before the provider
// call). Fresh: the mark is set now, send. Final: the outcome is recorded already (a replay).
// InProgress: a mark without an outcome (an earlier owner died mid-call): never send blindly.
// UnknownSession: neither the message nor its session exist.
// NotWorking: the session exists but is not WORKING (or is being deleted): nothing is marked,
// the send waits or fails per sessions.not_working.
struct SendClaim {
  enum class Status { Fresh, Final, InProgress, UnknownSession, NotWorking };
  Status status = Status::UnknownSession;
  KnownMessage known;  // Final / InProgress
  // The session as the claim saw it (Fresh, NotWorking): where to send, and its status.
  std::string session_status;
  std::string provider, node, engine_name, phone_number_id, secrets;
  // Engine sessions: the placement's fencing generation and the node's registry row (its URL,
  // its sealed credentials; empty for config nodes, whose credentials are in config).
  int64_t generation = 0;
  std::string node_url, node_secrets;
};

class MessageStore {
 public:
  explicit MessageStore(pg::Pool& pool) : pool_(pool) {}

  // One transaction for the batch; results are in input order. Rows repeating an earlier
  // (tenant, idempotency_key) are not inserted: their outcome names the earlier message.
  std::vector<InsertOutcome> insert_queued(const std::vector<NewMessage>& batch);
  // Removes a queued message whose command never reached Kafka (so a retry may reuse its key),
  // unless a retry with its Idempotency-Key found it meanwhile (and republishes its id).
  void discard(const std::string& id);
  std::optional<MessageView> get(const std::string& tenant_id, const std::string& id);
  std::map<std::string, KnownMessage> lookup(const std::vector<std::string>& ids);
  // One statement for the batch: marks each command's message 'sending' (creating the row for
  // a command published straight to Kafka, if its session exists) unless it is already past
  // 'queued', and says which case each one is. Results in input order; ids must be distinct.
  std::vector<SendClaim> claim_for_send(const std::vector<SendCommand>& commands);
  // Gives 'sending' marks back ('queued') for commands that never reached the provider.
  void release_claims(const std::vector<std::string>& ids);
  // One statement for the batch: the outcomes (upserted: a command published straight to
  // Kafka may have no row yet) and their history; a message already final is left as it is.
  // Returns the ids whose outcome was applied (the others were final already: `lookup` says how).
  std::set<std::string> record_outcomes(const std::vector<MessageOutcome>& outcomes);

  static bool valid_id(const std::string& id);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
