#pragma once
// `switchboard webhooks`: a member of consumer group sb-webhooks on sb.events, built on the
// shared PartitionedConsumer (poll, offsets, commits, backpressure, revoke/stop drains).
//
//   consumer ─▶ on_records ─▶ intake thread: event ─▶ stored (recorder) ─▶ matching endpoints ─▶ DeliveryEngine
//                                  │                                                              │ attempt (or not: parked)
//                                  │                                            ▼
//   consumer.finished ◀──────── event done ◀── on_durable ◀── DeliveryRecorder (PostgreSQL, sb.webhooks.dlq)
//
//   retry thread: claim due rows of the durable schedule (any replica, SKIP LOCKED) ─▶ engine ─▶ recorder
//
// An event's offset is finished only when each of its deliveries is delivered, durably scheduled
// for retry or dead-lettered, and the event itself is stored for replay: killing the process at
// any moment loses no delivery (some may be repeated, always with the same webhook-id). An event
// is stored before its first delivery starts, so a receiver can replay what it just received.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/workers/partitioned_consumer.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"
#include "switchboard/workers/webhooks/delivery_engine.hpp"
#include "switchboard/workers/webhooks/delivery_recorder.hpp"
#include "switchboard/workers/webhooks/endpoint_directory.hpp"
#include "switchboard/workers/webhooks/retry_schedule.hpp"
#include "switchboard/workers/webhooks/session_lines.hpp"

namespace sb {

struct DispatcherStats {
  std::atomic<uint64_t> events{0}, deliveries{0}, retries_claimed{0}, invalid_events{0};
};

class WebhookDispatcher : private RecordHandler {
 public:
  // Throws ConfigError for bad settings (retry schedule, Kafka properties).
  explicit WebhookDispatcher(const Config& config);
  // Stops and joins its threads (also when run() threw), then the members go in reverse order.
  ~WebhookDispatcher() override;
  // Consumes and runs the retry loop until `stop`, then drains (bounded), commits, leaves the
  // group and flushes (bounded). Throws ConfigError when webhooks.ops_listen can't be served.
  void run(const std::atomic<bool>& stop);
  const DispatcherStats& stats() const { return stats_; }
  const RecorderStats& recorder_stats() const { return recorder_.stats(); }

 private:
  // One consumed event: finished when all its deliveries and its storage are durable.
  struct EventProgress {
    kafka::TopicPartition source;
    int64_t offset = 0;
    uint64_t epoch = 0;  // late completions after a re-assignment are ignored
    std::atomic<int> remaining{0};
  };
  using Progress = std::shared_ptr<EventProgress>;

  // RecordHandler (poll thread): hand over / drop what has not started.
  void on_records(std::vector<ConsumedRecord> records) override;
  void on_revoking(const std::vector<kafka::TopicPartition>& partitions) override;

  void intake_loop();
  void handle_record(const ConsumedRecord& r);
  void deliver_live(Delivery d, const Progress& ev);
  void on_live_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev);
  void on_ordered_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev);
  // Into the schedule behind the earlier deliveries of its (endpoint, session).
  void park_behind(std::pair<Delivery, Progress> l);
  void finish_one(const Progress& ev);
  void dead_letter_record(const ConsumedRecord& r, const std::string& reason, const std::string& detail);
  void retry_loop(const std::atomic<bool>& stop);
  void claim_retries(std::size_t& claimed);
  // Deletes events and attempt-log rows older than webhooks.event_retention_days.
  void purge_expired();
  void log_stats();
  // Ends the loops and joins them, then writes what the recorder holds (idempotent).
  void shutdown();
  Decision decide_now(const Delivery& d, const std::optional<DeliveryAttempt>& a);
  std::string readiness();                       // for /health/ready: empty when ready
  std::vector<OpsServer::Metric> metrics() const;  // for /metrics

  // Member order is destruction order reversed: whatever runs callbacks is declared after what
  // those callbacks reach; the consumer (whose rebalance callbacks reach everything) last.
  const Config& config_;
  std::string topic_, dlq_topic_;
  SchemaSet schemas_;
  pg::Pool pool_;
  RetrySchedule schedule_;
  AddressGuard guard_;
  RetryPolicy policy_;  // PostgreSQL outages on the intake and retry threads
  EndpointDirectory directory_;
  WebhookDeliveryStore deliveries_;
  EventStore events_;
  DispatcherStats stats_;

  // Completions that arrive after shutdown (a late Kafka ack) must not reach the consumer.
  std::mutex finish_mu_;
  bool closed_ = false;

  // per_session endpoints: the ordering protocol (in flight / waiting / parked behind).
  using Lined = std::pair<Delivery, Progress>;
  using Lines = SessionLines<Lined>;
  Lines lines_;

  // An event stored for replay whose deliveries may now start.
  struct StoredFanOut {
    std::vector<Delivery> deliveries;
    Progress progress;
  };
  // Records handed over by the poll thread, not yet started (released on revoke), and stored
  // events waiting for the intake thread to deliver them (started: kept on revoke).
  std::mutex intake_mu_;
  std::condition_variable intake_cv_;
  std::deque<ConsumedRecord> intake_;
  std::deque<StoredFanOut> stored_;
  Stopper stopper_;  // ends every back-off sleep and both loops at once

  kafka::Producer producer_;
  DeliveryRecorder recorder_;           // dead letters through publisher_ (below), used only once running
  kafka::ReliablePublisher publisher_;  // its callbacks reach recorder_ and finish_one: destroyed before them
  DeliveryEngine engine_;               // its network thread reaches recorder_, lines_, publisher_
  std::thread intake_thread_, retry_thread_;  // started by run(), joined by shutdown() (also on a throw)
  PartitionedConsumer consumer_;        // last: its poll thread and rebalance callbacks reach everything above
};

}  // namespace sb
