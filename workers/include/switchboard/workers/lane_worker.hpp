#pragma once
// `switchboard worker --lane L`: a member of consumer group sb-workers-<L> on sb.commands.<L>.
// This class only wires real parts into LaneCore (lane_core.hpp, where the flow lives):
// PostgreSQL (PgCommandLedger), Kafka (PartitionedConsumer, a ReliablePublisher for events and
// dead letters), the provider, session lifecycle (SessionLifecycle) and Redis pacing when
// worker.session_rate_per_s is set.
//
// Threads: the poll loop (run()), the session engine's event loop, the ledger, the provider's
// HTTP loop, the producer's poll thread, and the pacer (when on). Member order is destruction
// order reversed: whatever runs callbacks is declared after what those callbacks reach.
#include <atomic>
#include <mutex>
#include <memory>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/workers/event_loop.hpp"
#include "switchboard/workers/lane_core.hpp"
#include "switchboard/workers/partitioned_consumer.hpp"
#include "switchboard/workers/pg_command_ledger.hpp"
#include "switchboard/workers/provider.hpp"
#include "switchboard/workers/sessions/session_resumer.hpp"

namespace sb {

class LaneWorker {
 public:
  // Throws ConfigError for a lane other than high|default|low.
  LaneWorker(const Config& config, const std::string& lane, std::unique_ptr<Provider> provider);
  ~LaneWorker();
  // Consumes until `stop` turns true, then drains (bounded by worker.revoke_drain_timeout_ms),
  // commits, leaves the group and flushes what it produced (bounded).
  void run(const std::atomic<bool>& stop);
  const LaneStats& stats() const { return core_.stats(); }

 private:
  // Events, dead letters and offsets for LaneCore.
  class Sink : public LaneSink {
   public:
    Sink(kafka::ReliablePublisher& publisher, std::string events_topic, std::string dlq_topic)
        : publisher_(publisher), events_topic_(std::move(events_topic)), dlq_topic_(std::move(dlq_topic)) {}
    void publish_event(const MessageOutcome& o, std::function<void()> acked, std::function<void(const Error&)> failed) override;
    void publish_json(const nlohmann::json& event, std::function<void()> acked,
                      std::function<void(const Error&)> failed) override;
    void dead_letter(const ConsumedRecord& r, const std::string& reason, const std::string& detail,
                     std::function<void()> acked) override;
    void finished(const ConsumedRecord& r) override;
    void released(const kafka::TopicPartition& tp, uint64_t epoch, std::size_t n) override;
    // Set once the consumer exists (it is built last) and cleared before it goes: a Kafka ack
    // arriving during shutdown then finds no consumer instead of a destroyed one.
    void attach(PartitionedConsumer* c) {
      std::lock_guard lock(mu_);
      consumer_ = c;
    }

   private:
    std::mutex mu_;
    PartitionedConsumer* consumer_ = nullptr;
    kafka::ReliablePublisher& publisher_;
    std::string events_topic_, dlq_topic_;
  };

  const Config& config_;
  std::string lane_;
  SchemaSet schemas_;
  pg::Pool pool_;
  MessageStore messages_;
  kafka::Producer producer_;
  kafka::ReliablePublisher publisher_;  // before the producer dies its callbacks become no-ops
  Sink sink_;
  LaneCore core_;                       // reaches loop_, ledger_, provider_, pacer_ (declared below)
  EventLoop loop_;                      // runs core_'s tasks
  PgCommandLedger ledger_;              // its thread calls back into core_ through loop_
  std::unique_ptr<PacingStore> pacing_store_;  // read by the pacer's thread
  std::unique_ptr<Pacer> pacer_;        // likewise (null: no pacing)
  std::unique_ptr<SessionControl> lifecycle_;  // likewise: its thread runs session.* commands
  std::unique_ptr<Provider> provider_;  // its HTTP thread calls back into core_ through loop_
  std::unique_ptr<SessionResumer> resumer_;    // its thread publishes through sink_
  PartitionedConsumer consumer_;        // last: its poll thread reaches everything above
};

}  // namespace sb
