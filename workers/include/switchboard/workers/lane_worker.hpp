#pragma once
// `switchboard worker --lane L`: a member of consumer group sb-workers-<L> on sb.commands.<L>.
//
//   poll ─▶ partition p ─▶ session FIFOs ─▶ executors (≤ worker.max_in_flight) ─▶ provider
//                │                                                               │
//                └── offset tracker (commit contiguous finished) ◀── results ◀───┘
//
// A record is "finished" only once its outcome is durable: status row in PostgreSQL and event
// acked on sb.events, or the record acked on sb.dlq. Offsets commit only over finished records,
// so a crash at any moment loses nothing; replays are deduplicated by message id.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/command.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/ops_server.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/core/tenant_store.hpp"
#include "switchboard/workers/partition_progress.hpp"
#include "switchboard/workers/provider.hpp"
#include "switchboard/workers/result_publisher.hpp"
#include "switchboard/workers/session_scheduler.hpp"

namespace sb {

struct WorkerStats {
  std::atomic<uint64_t> received{0}, sent{0}, failed{0}, replayed{0}, dead_lettered{0}, dropped_on_revoke{0},
      abandoned_on_revoke{0}, assigned{0}, revoked{0};
};

class LaneWorker : public kafka::RebalanceListener {
 public:
  // Throws ConfigError for a lane other than high|default|low.
  LaneWorker(const Config& config, const std::string& lane, Provider& provider);
  ~LaneWorker() override;
  // Consumes until `stop` turns true, then drains in-flight work (bounded), commits and leaves.
  void run(const std::atomic<bool>& stop);
  const WorkerStats& stats() const { return stats_; }

  void on_assigned(const std::vector<kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions, bool lost) override;

 private:
  struct Job {
    kafka::TopicPartition source;
    int64_t offset = 0;
    std::string key, raw;  // the record as received (for the DLQ)
    SendCommand command;
  };
  void handle_record(const rd_kafka_message_t* msg);
  void execute(const Job& job);
  bool session_known(const std::string& tenant_id, const std::string& session);
  MessageOutcome send_with_retries(const SendCommand& cmd);
  void dead_letter(const kafka::TopicPartition& source, int64_t offset, const std::string& key, const std::string& value,
                   const std::string& reason, const std::string& detail);
  void finished(const kafka::TopicPartition& source, int64_t offset);
  // A started job given up because its partition is being revoked (left uncommitted).
  void abandoned(const kafka::TopicPartition& source);
  bool owns(const kafka::TopicPartition& tp);
  void commit_finished(const std::vector<kafka::TopicPartition>* only = nullptr);
  void apply_backpressure();
  // Drops queued (not started) jobs of the matching partitions; they stay uncommitted.
  std::size_t abandon_queued(const std::function<bool(const kafka::TopicPartition&)>& which);
  void executor_loop();

  const Config& config_;
  std::string lane_, topic_, group_, dlq_topic_;
  Provider& provider_;
  SchemaSet schemas_;
  pg::Pool pool_;
  MessageStore messages_;
  TenantStore tenants_;
  SessionRateLimiter limiter_;
  kafka::Producer producer_;
  std::unique_ptr<ResultPublisher> results_;
  SessionScheduler<Job> scheduler_;
  std::unique_ptr<kafka::Consumer> consumer_;

  PartitionProgress progress_;
  std::mutex revoking_mu_;
  std::set<kafka::TopicPartition> revoking_;  // being taken away: started work may finish, nothing new starts

  std::mutex sessions_mu_;
  std::set<std::string> known_sessions_;  // "tenant/session" seen to exist (sessions are not deleted while in use)

  Backpressure backpressure_;
  std::vector<std::thread> executors_;
  WorkerStats stats_;
};

}  // namespace sb
