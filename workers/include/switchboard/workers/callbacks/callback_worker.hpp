#pragma once
// `switchboard callbacks`: a member of consumer group sb-callbacks on sb.callbacks. Turns the
// provider callbacks intake verified and stored (producers/callback_records.hpp) into state and
// events, in batches:
//   status   → the session's status + history (time-ordered), session.status; SCAN_QR_CODE on an
//              engine → the QR fetched and stored, session.qr for each new QR
//   receipt  → the message moves on (never backwards), message.delivered / .read / .failed
//   inbound  → stored once, message.received
// A receipt that arrives before its send's outcome is recorded waits (retried, up to
// callbacks.unmatched_retry_s) instead of being lost. Events are published before a record's
// offset commits; duplicates republish the same event ids.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/receipt_store.hpp"
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/session_store.hpp"
#include "switchboard/workers/partitioned_consumer.hpp"

namespace sb {

struct CallbackStats {
  std::atomic<uint64_t> received{0}, statuses{0}, receipts{0}, inbound{0}, unmatched_waits{0}, unmatched_dropped{0},
      invalid{0}, events{0};
};

class CallbackWorker : private RecordHandler {
 public:
  explicit CallbackWorker(const Config& config);
  ~CallbackWorker() override;
  void run(const std::atomic<bool>& stop);
  const CallbackStats& stats() const { return stats_; }

 private:
  struct Item {
    ConsumedRecord record;
    nlohmann::json callback;
    std::chrono::steady_clock::time_point first_seen, next_try;
    int attempts = 0;
    // "tenant/provider message id" for a receipt ("" otherwise): receipts of one message wait
    // and retry together, in arrival order, so a later one never overtakes an earlier one.
    std::string receipt_key() const;
  };
  void on_records(std::vector<ConsumedRecord> records) override;
  void on_revoking(const std::vector<kafka::TopicPartition>& partitions) override;
  void loop();
  void process(std::vector<Item> batch);
  void statuses(std::vector<Item>& items, std::vector<std::pair<Item*, std::vector<nlohmann::json>>>& done);
  void publish_then_finish(const ConsumedRecord& record, std::vector<nlohmann::json> events);

  const Config& config_;
  pg::Pool pool_;
  SessionStore sessions_;
  NodeRegistry nodes_;
  ReceiptStore receipts_;
  kafka::Producer producer_;
  kafka::ReliablePublisher publisher_;
  CallbackStats stats_;
  RetryPolicy retry_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> incoming_;
  std::deque<Item> waiting_;  // unmatched receipts, retried later (processing thread only)
  std::map<kafka::TopicPartition, uint64_t> revoked_;  // partitions taken away, with the epoch then
  Stopper stopper_;
  std::mutex consumer_mu_;
  PartitionedConsumer* consumer_ = nullptr;  // set while run() owns one
  std::thread thread_;  // last: it reaches everything above
};

}  // namespace sb
