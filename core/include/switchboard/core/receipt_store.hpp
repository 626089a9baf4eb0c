#pragma once
// What provider callbacks record about messages: receipts (sent → delivered → read, or an
// asynchronous failure) and inbound messages. Batched: one transaction per batch.
//
// A status never goes backwards: a late 'delivered' after 'read' is kept in the history only.
// A duplicate changes nothing (one history row per status reached; inbound deduped on the
// provider's id) but is reported again, so the caller republishes the same event id.
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/pg.hpp"

namespace sb {

struct Receipt {
  std::string tenant_id, provider_message_id, status, at;  // status: sent|delivered|read|failed
  std::optional<std::string> error;
};

struct AppliedReceipt {
  enum class Effect { Unmatched, Forward, Duplicate, Backward };
  Effect effect = Effect::Unmatched;
  std::string message_id, session, to;
};

struct Inbound {
  std::string tenant_id, session, provider_message_id, from, text, at;
  std::string id() const;  // ours: derived from the provider's, so a duplicate keeps it
};

class ReceiptStore {
 public:
  explicit ReceiptStore(pg::Pool& pool) : pool_(pool) {}
  // Results in input order. Unmatched: no message of that tenant has that provider id (yet —
  // a receipt can overtake its send's recorded outcome).
  std::vector<AppliedReceipt> apply(const std::vector<Receipt>& receipts);
  // True for each inbound message that is new.
  std::vector<bool> record_inbound(const std::vector<Inbound>& messages);

  static int rank(const std::string& status);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
