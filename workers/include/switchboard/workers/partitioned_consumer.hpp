#pragma once
// The consumer-group skeleton shared by the lane workers and the webhook dispatcher:
//
//   poll (batches) ─▶ track ─▶ handler.on_records ─▶ … ─▶ finished() / released() (any thread)
//   every commit_interval: commit each partition's finished prefix
//   in hand ≥ max_buffered: pause every partition; resume at half (poll never blocks)
//   revoke: handler.on_revoking → wait (bounded) for started work → commit → forget
//   stop:   the same for every partition, then leave the group
//
// A record handed to the handler must end in exactly one finished() or released(); only
// finished offsets are ever committed, so a crash at any moment loses nothing.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/workers/partition_progress.hpp"

namespace sb {

// One record in hand. `epoch` ties it to one ownership of its partition: completions after a
// revoke (and a later re-assignment) are ignored.
struct ConsumedRecord {
  kafka::TopicPartition source;
  int64_t offset = 0;
  uint64_t epoch = 0;
  std::string key, value;
};

class RecordHandler {
 public:
  virtual ~RecordHandler() = default;
  // Poll thread. Records in offset order per partition. Must not block for long: hand the
  // work on and return.
  virtual void on_records(std::vector<ConsumedRecord> records) = 0;
  // Poll thread, before `partitions` are taken away (rebalance or stop): start nothing more of
  // theirs and release() what has not started. Started work may still finish (it is waited
  // for, bounded, so its offsets can commit).
  virtual void on_revoking(const std::vector<kafka::TopicPartition>& partitions) = 0;
  virtual void on_assigned(const std::vector<kafka::TopicPartition>&) {}
};

struct ConsumerStats {
  std::atomic<uint64_t> received{0}, skipped{0}, assigned{0}, revoked{0}, abandoned_on_revoke{0};
};

class PartitionedConsumer : private kafka::RebalanceListener {
 public:
  struct Options {
    std::string group;
    std::vector<std::string> topics;
    std::string who;  // log event prefix: "worker", "webhooks"
    int commit_interval_ms = 1000;
    std::size_t max_buffered = 10000;
    int drain_timeout_ms = 10000;  // revoke / stop: how long started work may take to finish
    int batch_max = 500;           // records handed over per on_records call
    std::map<std::string, std::string> props;  // librdkafka consumer overrides
  };

  // `handler` must outlive this object. Throws ConfigError for bad Kafka properties.
  PartitionedConsumer(const KafkaConfig& kafka, Options options, RecordHandler& handler);
  ~PartitionedConsumer() override;

  // Subscribes and polls until `stop`, then stops gracefully (bounded by drain_timeout_ms).
  void run(const std::atomic<bool>& stop);

  // Thread-safe. A record is durably handled / given up (left uncommitted for the next owner).
  void finished(const ConsumedRecord& r) { progress_.finished(r.source, r.offset, r.epoch); }
  void finished(const kafka::TopicPartition& tp, int64_t offset, uint64_t epoch) { progress_.finished(tp, offset, epoch); }
  void released(const kafka::TopicPartition& tp, uint64_t epoch, std::size_t n = 1) { progress_.released(tp, n, epoch); }

  std::size_t in_hand() const { return progress_.in_hand(); }
  std::vector<kafka::TopicPartition> owned() const { return progress_.owned(); }
  const ConsumerStats& stats() const { return stats_; }
  // Producer-style reachability for /health/ready (metadata request with a deadline).
  bool reachable(int timeout_ms) const;

 private:
  void on_assigned(const std::vector<kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions, bool lost) override;
  void poll_batch(int timeout_ms);
  void apply_backpressure();
  void drain(const std::vector<kafka::TopicPartition>& partitions);

  Options options_;
  RecordHandler& handler_;
  PartitionProgress progress_;
  Backpressure backpressure_;
  ConsumerStats stats_;
  bool stopping_ = false;             // poll thread only: the stop drain already ran
  std::unique_ptr<kafka::Consumer> consumer_;  // last: its rebalance callback reaches everything above
};

}  // namespace sb
