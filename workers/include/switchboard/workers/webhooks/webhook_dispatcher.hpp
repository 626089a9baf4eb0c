#pragma once
// `switchboard webhooks`: a member of consumer group sb-webhooks on sb.events.
//
//   poll ─▶ event ─▶ matching endpoints ─▶ DeliveryEngine (curl multi, per-endpoint caps/breakers)
//             │                                        │ attempt (or not: parked)
//             │                                        ▼
//             └──────── offset tracker ◀── on_durable ◀ DeliveryRecorder (PostgreSQL, sb.webhooks.dlq)
//
//   retry loop: claim due rows of the durable schedule (any replica, SKIP LOCKED) ─▶ engine ─▶ recorder
//
// An event's offset is finished only when each of its deliveries is delivered, durably scheduled
// for retry or dead-lettered, and the event itself is stored for replay: killing the process at
// any moment loses no delivery (some may be repeated, always with the same webhook-id).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/ops_server.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/workers/partition_progress.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"
#include "switchboard/workers/webhooks/delivery_engine.hpp"
#include "switchboard/workers/webhooks/delivery_recorder.hpp"
#include "switchboard/workers/webhooks/endpoint_directory.hpp"
#include "switchboard/workers/webhooks/retry_schedule.hpp"

namespace sb {

struct DispatcherStats {
  std::atomic<uint64_t> events{0}, deliveries{0}, retries_claimed{0}, invalid_events{0};
};

class WebhookDispatcher : public kafka::RebalanceListener {
 public:
  explicit WebhookDispatcher(const Config& config);
  ~WebhookDispatcher() override;
  // Consumes and runs the retry loop until `stop`, then drains (bounded), commits and leaves.
  void run(const std::atomic<bool>& stop);
  const DispatcherStats& stats() const { return stats_; }
  const RecorderStats& recorder_stats() const { return recorder_.stats(); }

  void on_assigned(const std::vector<kafka::TopicPartition>& partitions) override;
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions, bool lost) override;

 private:
  // One consumed event: finished when all its deliveries and its storage are durable.
  struct EventProgress {
    kafka::TopicPartition source;
    int64_t offset = 0;
    uint64_t epoch = 0;  // late completions after a re-assignment are ignored
    std::atomic<int> remaining{0};
  };
  using Progress = std::shared_ptr<EventProgress>;
  using LineKey = std::pair<std::string, std::string>;  // (endpoint id, session) of a per_session endpoint

  void handle_record(const rd_kafka_message_t* msg);
  void deliver_live(Delivery d, const Progress& ev);
  void on_live_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev);
  void on_ordered_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev);
  void finish_one(const Progress& ev);
  void dead_letter_record(const kafka::TopicPartition& tp, int64_t offset, uint64_t epoch, const std::string& key,
                          const std::string& value, const std::string& detail);
  void retry_loop(const std::atomic<bool>& stop);
  // Deletes events and attempt-log rows older than webhooks.event_retention_days.
  void purge_expired();
  void commit_finished(const std::vector<kafka::TopicPartition>* only = nullptr);
  void apply_backpressure();
  Decision decide_now(const Delivery& d, const std::optional<DeliveryAttempt>& a);
  std::string readiness();                       // for /health/ready: empty when ready
  std::vector<OpsServer::Metric> metrics() const;  // for /metrics

  const Config& config_;
  std::string topic_, group_, dlq_topic_;
  SchemaSet schemas_;
  pg::Pool pool_;
  RetrySchedule schedule_;
  AddressGuard guard_;
  kafka::Producer producer_;
  kafka::ReliablePublisher publisher_;
  EndpointDirectory directory_;
  WebhookDeliveryStore deliveries_;
  EventStore events_;
  std::unique_ptr<kafka::Consumer> consumer_;

  PartitionProgress progress_;
  std::atomic<std::size_t> buffered_{0};  // events consumed, not finished
  Backpressure backpressure_;

  // The live deliveries of one (endpoint, session) of a per_session endpoint: the head is in
  // flight, the rest wait. Once the head is being parked, later ones are parked behind it
  // until its row is written (after that the schedule itself holds them back).
  struct Line {
    std::deque<std::pair<Delivery, Progress>> waiting;  // front: in flight
    bool parking = false;
  };
  std::mutex lines_mu_;
  std::map<LineKey, Line> lines_;

  std::mutex retry_mu_;
  std::condition_variable retry_cv_;

  DispatcherStats stats_;
  DeliveryRecorder recorder_;
  DeliveryEngine engine_;  // last: destroyed first, its final callbacks still reach everything above
};

}  // namespace sb
