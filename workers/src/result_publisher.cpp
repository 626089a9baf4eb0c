#include "switchboard/workers/result_publisher.hpp"

#include <chrono>

#include "switchboard/core/events.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {
// One record on its way to an ack. The pending delivery callback holds the only reference, so
// the publication lives exactly as long as it is unacknowledged.
struct Publication : std::enable_shared_from_this<Publication> {
  kafka::Producer& producer;
  std::string topic, key, value;
  kafka::Headers headers;
  std::function<void()> on_acked;

  Publication(kafka::Producer& p, std::string t, std::string k, std::string v, kafka::Headers h, std::function<void()> a)
      : producer(p), topic(std::move(t)), key(std::move(k)), value(std::move(v)), headers(std::move(h)), on_acked(std::move(a)) {}

  void start() {
    auto self = shared_from_this();
    for (int attempt = 1;; ++attempt) {
      try {
        producer.produce(topic, key, value, headers, [self](const kafka::DeliveryResult& r) { self->delivered(r); });
        return;
      } catch (const Error& e) {  // local queue full: wait for the broker to drain it
        if (attempt % 50 == 1) log::warn("publish.queue_full", {{"topic", topic}, {"key", key}, {"detail", e.what()}});
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  void delivered(const kafka::DeliveryResult& r) {
    if (r.ok()) {
      on_acked();
    } else if (r.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || r.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
      // Shutting down: left unacked, so its offset is not committed and it is redone later.
    } else {
      log::warn("publish.retry", {{"topic", topic}, {"key", key}, {"error", r.error}});
      start();
    }
  }
};
}  // namespace

void publish_until_acked(kafka::Producer& producer, const std::string& topic, const std::string& key,
                         const std::string& value, const kafka::Headers& headers, std::function<void()> on_acked) {
  std::make_shared<Publication>(producer, topic, key, value, headers, std::move(on_acked))->start();
}

ResultPublisher::ResultPublisher(const Config& config, MessageStore& store, kafka::Producer& producer,
                                 Durable on_durable)
    : config_(config),
      store_(store),
      producer_(producer),
      on_durable_(std::move(on_durable)),
      events_topic_(config.topic("sb.events")),
      thread_([this] { loop(); }) {}

ResultPublisher::~ResultPublisher() { stop(); }

void ResultPublisher::submit(Item item) {
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(item));
  if (queue_.size() >= static_cast<std::size_t>(config_.worker.result_batch_max)) cv_.notify_one();
}

void ResultPublisher::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
  producer_.flush(10000);
  flush_published();
}

void ResultPublisher::flush_published() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    ids.swap(published_);
  }
  if (ids.empty()) return;
  try {
    store_.mark_events_published(ids);
  } catch (const Error& e) {
    // Only an optimisation for replays (which then republish the same event id): never fatal.
    log::warn("results.mark_published_failed", {{"count", std::to_string(ids.size())}, {"detail", e.what()}});
  }
}

void ResultPublisher::loop() {
  using Clock = std::chrono::steady_clock;
  const auto linger = std::chrono::milliseconds(config_.worker.result_linger_ms);
  auto last_flag_flush = Clock::now();
  for (;;) {
    std::vector<Item> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, linger, [&] { return stopping_ || queue_.size() >= static_cast<std::size_t>(config_.worker.result_batch_max); });
      if (queue_.empty() && stopping_) return;
      while (!queue_.empty() && batch.size() < static_cast<std::size_t>(config_.worker.result_batch_max)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Publication flags are batched on their own, slower clock: fewer commits for PostgreSQL.
    if (Clock::now() - last_flag_flush >= std::chrono::milliseconds(100)) {
      flush_published();
      last_flag_flush = Clock::now();
    }
    if (batch.empty()) continue;

    std::vector<MessageOutcome> rows;
    for (const auto& item : batch)
      if (!item.already_recorded) rows.push_back(item.outcome);
    // The status must be durable before its event exists; PostgreSQL being down stalls (and,
    // through pausing, backs up) the pipeline rather than losing anything.
    for (int attempt = 1;; ++attempt) {
      try {
        store_.record_outcomes(rows);
        break;
      } catch (const Error& e) {
        log::error("results.record_failed", {{"count", std::to_string(rows.size())}, {"attempt", std::to_string(attempt)},
                                             {"retryable", e.retryable() ? "true" : "false"}, {"detail", e.what()}});
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 * attempt)));
      }
    }
    for (auto& item : batch) {
      const auto event = message_event(item.outcome);
      const auto id = item.outcome.id;
      const auto source = item.source;
      const auto offset = item.offset;
      publish_until_acked(producer_, events_topic_, item.outcome.tenant_id, event.dump(),
                          {{"sb-event-type", event["type"].get<std::string>()}, {"sb-message-id", id}},
                          [this, id, source, offset] {
                            {
                              std::lock_guard lock(mu_);
                              published_.push_back(id);
                            }
                            on_durable_(source, offset);
                          });
    }
  }
}

}  // namespace sb
