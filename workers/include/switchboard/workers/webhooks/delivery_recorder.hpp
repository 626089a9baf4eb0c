#pragma once
// Makes delivery outcomes durable, batched (per webhooks.record_linger_ms: one transaction with
// one multi-row statement per kind — attempt log, schedule park / reschedule / complete, and the
// events kept for replay), dead letters on sb.webhooks.dlq (acked first, through the
// ReliablePublisher) and endpoint health (failing_since; 410 or failing too long disables the
// endpoint and emits webhook.endpoint.disabled). Only then does each item's on_durable run: the
// dispatcher finishes the Kafka offset there.
//
// Failures follow the one RetryPolicy: PostgreSQL unavailable → the batch is retried with
// back-off (a stop ends the wait at once; the unwritten batch is then left to the next owner);
// a batch PostgreSQL refuses for good is split to isolate the refused rows, which are moved
// aside (logged; an undeliverable-and-unschedulable delivery is dead-lettered) instead of
// wedging every later outcome behind them.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"

namespace sb {

struct RecorderStats {
  std::atomic<uint64_t> delivered{0}, failed{0}, parked{0}, dead_lettered{0}, endpoints_disabled{0}, batches{0},
      outages{0}, refused{0};
};

class DeliveryRecorder {
 public:
  using Durable = std::function<void()>;
  using Disabled = std::function<void(const WebhookEndpoint&)>;
  // on_disabled: an endpoint was just disabled (the dispatcher drops its cached copy).
  // `publisher` (dead letters) is only used once submit() is called: it may be constructed
  // after this object, and must be stopped before it (its callbacks reach this object).
  DeliveryRecorder(const Config& config, pg::Pool& pool, kafka::Producer& producer, kafka::ReliablePublisher& publisher,
                   Disabled on_disabled, RetryPolicy policy = RetryPolicy());
  ~DeliveryRecorder();  // stop()

  // Thread-safe, never blocks on I/O. A DeadLetter decision is published first and recorded
  // once acked.
  void submit(Delivery delivery, Decision decision, Durable on_durable);
  void record_event(StoredEvent event, Durable on_durable);
  // Writes what was submitted (one try: no back-off while stopping), then stops the thread.
  // Later submissions are kept unwritten (their offsets stay uncommitted).
  void stop();
  const RecorderStats& stats() const { return stats_; }

 private:
  struct Outcome {
    Delivery delivery;
    Decision decision;
    Durable on_durable;
  };
  struct Batch {
    std::vector<Outcome> outcomes;
    std::vector<StoredEvent> events;
    std::vector<Durable> event_callbacks;
    bool empty() const { return outcomes.empty() && events.empty(); }
  };

  void loop();
  void write(Batch& batch);
  void enqueue(Outcome o);
  void dead_letter(Outcome o);
  // Health and disables: best effort (a refused update is logged; the next failure redoes it).
  bool write_health(std::vector<std::string>& failed, std::vector<std::string>& succeeded,
                    std::vector<std::pair<std::string, std::string>>& disable, std::set<std::string>& seen);
  void disable_endpoints(const std::vector<std::pair<std::string, std::string>>& id_reason);
  // A row PostgreSQL refuses for good: moved aside so the rest of the batch (and later ones) go on.
  void refused(Outcome& o, const std::string& why);
  // Runs f until it succeeds (true), gives up on a non-retryable error (rethrown), or a stop
  // interrupts the back-off (false).
  template <typename F>
  bool with_retries(const char* what, std::size_t rows, F&& f);

  const Config& config_;
  kafka::Producer& producer_;
  kafka::ReliablePublisher& publisher_;
  Disabled on_disabled_;
  RetryPolicy policy_;
  WebhookDeliveryStore deliveries_;
  WebhookStore endpoints_;
  std::string dlq_topic_, events_topic_;
  // Last health written per endpoint, so a healthy endpoint's successes cost no writes: true = failing.
  std::unordered_map<std::string, bool> failing_;
  std::mt19937_64 rng_{std::random_device{}()};

  std::mutex mu_;
  std::condition_variable cv_;
  Batch pending_;
  bool stopping_ = false;
  Stopper stopper_;  // ends back-off sleeps at once on stop
  RecorderStats stats_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace sb
