#pragma once
// Makes delivery outcomes durable, batched (one PostgreSQL transaction per webhooks.record_linger_ms):
// the attempt log, the retry schedule (park / reschedule / complete), dead letters on
// sb.webhooks.dlq (acked first), endpoint health (failing_since; 410 or failing too long
// disables the endpoint and emits webhook.endpoint.disabled), and the events kept for replay.
// Only then does each item's on_durable run: the dispatcher finishes the Kafka offset there.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"

namespace sb {

struct RecorderStats {
  std::atomic<uint64_t> delivered{0}, failed{0}, parked{0}, dead_lettered{0}, endpoints_disabled{0}, batches{0};
};

class DeliveryRecorder {
 public:
  using Durable = std::function<void()>;
  using Disabled = std::function<void(const WebhookEndpoint&)>;
  // on_disabled: an endpoint was just disabled (the dispatcher drops its cached copy).
  DeliveryRecorder(const Config& config, pg::Pool& pool, kafka::Producer& producer, Disabled on_disabled);
  ~DeliveryRecorder();  // stop()

  void submit(Delivery delivery, Decision decision, Durable on_durable);
  void record_event(StoredEvent event, Durable on_durable);
  // Writes what was submitted, then stops the thread.
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
  void write(Batch& batch);  // retries until it succeeds (or stop), never drops
  void dead_letter(const std::vector<const Outcome*>& outcomes);
  void disable_endpoints(const std::vector<std::pair<std::string, std::string>>& id_reason);

  const Config& config_;
  kafka::Producer& producer_;
  Disabled on_disabled_;
  WebhookDeliveryStore deliveries_;
  WebhookStore endpoints_;
  EventStore events_;
  std::string dlq_topic_, events_topic_;
  // Last health written per endpoint, so a healthy endpoint's successes cost no writes: true = failing.
  std::unordered_map<std::string, bool> failing_;

  std::mutex mu_;
  std::condition_variable cv_;
  Batch pending_;
  bool stopping_ = false;
  RecorderStats stats_;
  std::thread thread_;
};

}  // namespace sb
