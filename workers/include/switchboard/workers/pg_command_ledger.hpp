#pragma once
// CommandLedger on PostgreSQL: claims ("sending" marks) and outcomes are written in batches,
// one statement per batch of each, on one thread. No linger by default: a batch is whatever
// queued up while the previous statement ran, so batches grow with load and an idle worker
// pays one round trip. A batch PostgreSQL refuses as a whole is split until the offending
// rows are alone; they (only they) are handed back as poison (review C2). An outage is
// retried with the shared RetryPolicy until it ends or the ledger stops.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "switchboard/core/message_store.hpp"
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/workers/lane_core.hpp"

namespace sb {

class PgCommandLedger : public CommandLedger {
 public:
  struct Options {
    std::size_t batch_max = 500;
    int linger_ms = 0;
    RetryPolicy retry{RetryPolicy::Options{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 2.0, 0.2, 0}};
  };
  PgCommandLedger(MessageStore& store, Options options);
  // Stops the thread: work not yet written is dropped without a callback (its records stay
  // uncommitted and are redone by the next owner).
  ~PgCommandLedger() override;

  void claim(const SendCommand& command, Claimed done) override;
  void record(const MessageOutcome& outcome, OutcomeRecorded done) override;
  void unclaim(const std::vector<std::string>& message_ids, Recorded done) override;
  struct Counters {
    std::atomic<uint64_t> claim_statements{0}, record_statements{0}, poison{0}, outages{0}, superseded{0};
  };
  const Counters& counters() const { return counters_; }

 private:
  struct PendingClaim {
    SendCommand command;
    Claimed done;
  };
  struct PendingRecord {
    MessageOutcome outcome;
    OutcomeRecorded done;
  };
  void loop();
  void write_claims(std::vector<PendingClaim>& batch);
  void write_records(std::vector<PendingRecord>& batch);
  void write_unclaims(std::deque<std::pair<std::vector<std::string>, Recorded>>& batch);
  // Runs `write` over [begin, end) with outage retries; splits on poison. `fail(i, err)` hands
  // item i its error.
  template <typename Write, typename Fail>
  void run_split(std::size_t begin, std::size_t end, Write& write, Fail& fail);

  MessageStore& store_;
  Options options_;
  Counters counters_;
  Stopper stopper_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingClaim> claims_;
  std::deque<PendingRecord> records_;
  std::deque<std::pair<std::vector<std::string>, Recorded>> unclaims_;
  std::thread thread_;  // last
};

}  // namespace sb
