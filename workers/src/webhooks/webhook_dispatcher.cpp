#include "switchboard/workers/webhooks/webhook_dispatcher.hpp"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "switchboard/core/log.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {
namespace {
using Steady = std::chrono::steady_clock;

std::string str(uint64_t v) { return std::to_string(v); }

bool subscribed(const WebhookEndpoint& e, const std::string& type) {
  return std::any_of(e.events.begin(), e.events.end(), [&](const std::string& p) { return event_matches(p, type); });
}

std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

// A claimed row stays ours this long: long enough to wait behind the endpoint's cap and send.
int lease_s(const WebhooksConfig& c) { return std::max(300, 4 * c.timeout_ms / 1000); }

}  // namespace

WebhookDispatcher::WebhookDispatcher(const Config& config)
    : config_(config),
      topic_(config.topic("sb.events")),
      group_(config.topic("sb-webhooks")),
      dlq_topic_(config.topic("sb.webhooks.dlq")),
      schemas_(config.schemas_dir),
      pool_(config.postgres),
      schedule_(RetrySchedule::parse(config.webhooks.retry_schedule, config.webhooks.retry_jitter)),
      guard_(config.webhooks.allowed_cidrs()),
      producer_(config.kafka),
      publisher_(producer_),
      directory_(pool_, config.webhooks.endpoint_cache_ms),
      deliveries_(pool_),
      events_(pool_),
      recorder_(config, pool_, producer_, [this](const WebhookEndpoint& e) { directory_.invalidate(e.tenant_id); }),
      engine_(config.webhooks, guard_) {}

WebhookDispatcher::~WebhookDispatcher() = default;

Decision WebhookDispatcher::decide_now(const Delivery& d, const std::optional<DeliveryAttempt>& a) {
  // The park delay matters (and costs an engine lock) only when no attempt was made.
  return decide(d, a, schedule_, a ? 0 : engine_.park_delay_s(d.endpoint.id), rng());
}

void WebhookDispatcher::run(const std::atomic<bool>& stop) {
  consumer_ = std::make_unique<kafka::Consumer>(config_.kafka, group_, this);
  consumer_->subscribe({topic_});
  std::thread retries([this, &stop] { retry_loop(stop); });
  OpsServer ops(config_.webhooks.ops_listen, "webhooks.ops_listen", [this] { return readiness(); },
                [this] { return metrics(); });
  log::info("webhooks.started", {{"topic", topic_}, {"group", group_},
                                 {"max_in_flight", std::to_string(config_.webhooks.max_in_flight)},
                                 {"per_endpoint", std::to_string(config_.webhooks.max_in_flight_per_endpoint)},
                                 {"timeout_ms", std::to_string(config_.webhooks.timeout_ms)}});
  auto last_commit = Steady::now();
  auto last_stats = Steady::now();
  while (!stop.load()) {
    if (auto msg = consumer_->poll(100)) handle_record(msg.get());
    apply_backpressure();
    if (Steady::now() - last_commit >= std::chrono::milliseconds(config_.webhooks.commit_interval_ms)) {
      commit_finished();
      last_commit = Steady::now();
    }
    if (Steady::now() - last_stats >= std::chrono::seconds(30)) {
      const auto& r = recorder_.stats();
      log::info("webhooks.stats", {{"events", str(stats_.events)}, {"deliveries", str(stats_.deliveries)},
                                   {"delivered", str(r.delivered)}, {"failed", str(r.failed)}, {"parked", str(r.parked)},
                                   {"dead_lettered", str(r.dead_lettered)}, {"retries_claimed", str(stats_.retries_claimed)},
                                   {"in_flight", str(engine_.in_flight())}, {"buffered", str(buffered_.load())}});
      last_stats = Steady::now();
    }
  }
  log::info("webhooks.stopping", {{"buffered", str(buffered_.load())}, {"in_flight", str(engine_.in_flight())}});
  retry_cv_.notify_all();
  retries.join();
  // Let started deliveries finish (bounded by one attempt's timeout), then make them durable.
  const auto deadline = Steady::now() + std::chrono::milliseconds(config_.webhooks.timeout_ms + 2000);
  while (engine_.outstanding() > 0 && Steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  recorder_.stop();
  commit_finished();
  consumer_->close();
  const auto& r = recorder_.stats();
  log::info("webhooks.stopped", {{"events", str(stats_.events)}, {"delivered", str(r.delivered)},
                                 {"failed", str(r.failed)}, {"dead_lettered", str(r.dead_lettered)}});
}

std::string WebhookDispatcher::readiness() {
  if (!producer_.reachable(2000)) return "kafka unreachable";
  if (!pool_.reachable()) return "postgresql unreachable";
  return {};
}

std::vector<OpsServer::Metric> WebhookDispatcher::metrics() const {
  const auto& r = recorder_.stats();
  auto c = [](const char* name, const char* help, uint64_t v) {
    return OpsServer::Metric{name, help, "counter", static_cast<double>(v)};
  };
  return {c("switchboard_webhooks_events_total", "Events consumed from sb.events", stats_.events),
          c("switchboard_webhooks_deliveries_total", "Deliveries fanned out from consumed events", stats_.deliveries),
          c("switchboard_webhooks_delivered_total", "Attempts answered 2xx", r.delivered),
          c("switchboard_webhooks_failed_total", "Attempts that failed (retried later or endpoint gone)", r.failed),
          c("switchboard_webhooks_parked_total", "Deliveries parked without an attempt (breaker open, line full)", r.parked),
          c("switchboard_webhooks_dead_lettered_total", "Deliveries sent to sb.webhooks.dlq", r.dead_lettered),
          c("switchboard_webhooks_endpoints_disabled_total", "Endpoints disabled (410 or failing too long)",
            r.endpoints_disabled),
          c("switchboard_webhooks_retries_claimed_total", "Scheduled deliveries claimed for another attempt",
            stats_.retries_claimed),
          c("switchboard_webhooks_invalid_events_total", "Records on sb.events that failed validation", stats_.invalid_events),
          {"switchboard_webhooks_in_flight", "HTTP requests in flight", "gauge", static_cast<double>(engine_.in_flight())},
          {"switchboard_webhooks_buffered_events", "Events consumed and not yet finished", "gauge",
           static_cast<double>(buffered_.load())}};
}

void WebhookDispatcher::handle_record(const rd_kafka_message_t* msg) {
  const kafka::TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
  const int64_t offset = msg->offset;
  const auto epoch = progress_.track(tp, offset);
  if (!epoch) return;  // not ours (any more), or a redelivery of a record in hand or done
  auto ev = std::make_shared<EventProgress>();
  ev->source = tp;
  ev->offset = offset;
  ev->epoch = *epoch;
  ++buffered_;
  ++stats_.events;
  const std::string key(kafka::key_of(msg));
  const std::string value(kafka::value_of(msg));

  nlohmann::json event;
  try {
    event = nlohmann::json::parse(value);
    schemas_.validate("events/event", event);
    if (!MessageStore::valid_id(event["tenant"].get<std::string>()))
      throw InvalidInput("event 'tenant' must be a tenant id (uuid)", "tenant");
  } catch (const std::exception& e) {
    // A bad record must not stop the partition: park it in the DLQ with the reason.
    return dead_letter_record(tp, offset, ev->epoch, key, value, e.what());
  }
  StoredEvent stored;
  stored.id = event["id"].get<std::string>();
  stored.tenant_id = event["tenant"].get<std::string>();
  stored.type = event["type"].get<std::string>();
  if (event["session"].is_string()) stored.session = event["session"].get<std::string>();
  stored.occurred_at = event["occurred_at"].get<std::string>();
  stored.body = value;

  EndpointDirectory::List endpoints;
  for (int attempt = 1;; ++attempt) {
    try {
      endpoints = directory_.of(stored.tenant_id);
      break;
    } catch (const Error& e) {
      // Without its endpoints the event can't go anywhere: wait for PostgreSQL (offset held).
      log::warn("webhooks.endpoints_unavailable", {{"tenant", stored.tenant_id}, {"detail", e.what()},
                                                   {"attempt", std::to_string(attempt)}});
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 200 * attempt)));
    }
  }
  std::vector<Delivery> fan_out;
  auto body = std::make_shared<const std::string>(value);
  for (const auto& e : *endpoints)
    if (e.enabled && subscribed(e, stored.type))
      fan_out.push_back(Delivery{e, stored.id, stored.type, stored.session, body, 1, 0});
  ev->remaining = static_cast<int>(fan_out.size()) + 1;  // + storing the event
  stats_.deliveries += fan_out.size();
  recorder_.record_event(std::move(stored), [this, ev] { finish_one(ev); });
  for (auto& d : fan_out) deliver_live(std::move(d), ev);
}

void WebhookDispatcher::deliver_live(Delivery d, const Progress& ev) {
  if (!d.ordered()) {
    engine_.submit(std::move(d), [this, ev](Delivery dd, std::optional<DeliveryAttempt> a) {
      on_live_attempt(std::move(dd), std::move(a), ev);
    });
    return;
  }
  // per_session: one delivery of a (endpoint, session) in flight at a time; later ones wait in
  // line, and behind a parked one in the durable schedule.
  LineKey key{d.endpoint.id, d.session.value_or("")};
  auto park_behind = [this](Delivery pd, const Progress& pev) {
    auto dec = decide_now(pd, std::nullopt);
    dec.due_in_s = 0;  // claimable only once the earlier ones are done
    recorder_.submit(std::move(pd), std::move(dec), [this, pev] { finish_one(pev); });
  };
  {
    std::lock_guard lock(lines_mu_);
    auto it = lines_.find(key);
    if (it != lines_.end()) {
      if (!it->second.parking) {
        it->second.waiting.emplace_back(std::move(d), ev);
        return;
      }
      // Submitted after the head: the recorder writes rows in submission order.
      park_behind(std::move(d), ev);
      return;
    }
  }
  bool parked_earlier = false;
  for (int attempt = 1;; ++attempt) {
    try {
      parked_earlier = deliveries_.has_pending(d.endpoint.id, d.session);
      break;
    } catch (const Error& e) {
      log::warn("webhooks.schedule_unavailable", {{"endpoint", d.endpoint.id}, {"detail", e.what()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 200 * attempt)));
    }
  }
  if (parked_earlier) return park_behind(std::move(d), ev);
  {
    std::lock_guard lock(lines_mu_);
    lines_[key].waiting.emplace_back(d, ev);
  }
  engine_.submit(std::move(d), [this, ev](Delivery dd, std::optional<DeliveryAttempt> a) {
    on_ordered_attempt(std::move(dd), std::move(a), ev);
  });
}

void WebhookDispatcher::on_live_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev) {
  auto dec = decide_now(d, a);
  recorder_.submit(std::move(d), std::move(dec), [this, ev] { finish_one(ev); });
}

void WebhookDispatcher::on_ordered_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev) {
  auto dec = decide_now(d, a);
  const bool parked = dec.action == Decision::Action::Retry || dec.action == Decision::Action::Park;
  LineKey key{d.endpoint.id, d.session.value_or("")};
  std::deque<std::pair<Delivery, Progress>> behind;
  std::optional<std::pair<Delivery, Progress>> next;
  std::unique_lock lock(lines_mu_);  // held while submitting: later arrivals queue after these rows
  auto it = lines_.find(key);
  if (it != lines_.end()) {
    auto& line = it->second;
    if (!line.waiting.empty()) line.waiting.pop_front();  // this delivery
    if (parked) {
      behind.swap(line.waiting);
      line.parking = true;
    } else if (!line.waiting.empty()) {
      next = line.waiting.front();  // stays in line as the new head
    } else {
      lines_.erase(it);
    }
  }
  // The head first: the schedule keeps insertion order, and later events queue behind it. The
  // line is dropped only once the head's row is written (has_pending sees it from then on).
  recorder_.submit(std::move(d), std::move(dec), [this, ev, key, parked] {
    if (parked) {
      std::lock_guard l(lines_mu_);
      if (auto i = lines_.find(key); i != lines_.end() && i->second.parking) lines_.erase(i);
    }
    finish_one(ev);
  });
  for (auto& [bd, bev] : behind) {
    auto bdec = decide_now(bd, std::nullopt);
    bdec.due_in_s = 0;
    recorder_.submit(std::move(bd), std::move(bdec), [this, bev = bev] { finish_one(bev); });
  }
  lock.unlock();  // the engine may call back at once (parking): never under this lock
  if (next)
    engine_.submit(std::move(next->first), [this, nev = next->second](Delivery dd, std::optional<DeliveryAttempt> na) {
      on_ordered_attempt(std::move(dd), std::move(na), nev);
    });
}

void WebhookDispatcher::finish_one(const Progress& ev) {
  if (--ev->remaining > 0) return;
  --buffered_;
  progress_.finished(ev->source, ev->offset, ev->epoch);  // revoked meanwhile: ignored, the new owner redoes it
}

void WebhookDispatcher::dead_letter_record(const kafka::TopicPartition& tp, int64_t offset, uint64_t epoch,
                                           const std::string& key, const std::string& value, const std::string& detail) {
  ++stats_.invalid_events;
  log::warn("webhooks.invalid_event", {{"topic", tp.topic}, {"partition", std::to_string(tp.partition)},
                                       {"offset", std::to_string(offset)}, {"key", key}, {"detail", detail}});
  auto ev = std::make_shared<EventProgress>();
  ev->source = tp;
  ev->offset = offset;
  ev->epoch = epoch;
  ev->remaining = 1;
  publisher_.publish(dlq_topic_, key, value, kafka::dead_letter_headers(tp, offset, "invalid_event", detail),
                     [this, ev] { finish_one(ev); });
}

void WebhookDispatcher::retry_loop(const std::atomic<bool>& stop) {
  auto last_purge = Steady::now() - std::chrono::hours(1);  // first sweep at start
  const auto interval = std::chrono::milliseconds(config_.webhooks.retry_poll_interval_ms);
  while (!stop.load()) {
    std::size_t claimed = 0;
    try {
      // Claim only what can be sent soon: rows wait in the schedule, not in this process.
      if (engine_.outstanding() < static_cast<std::size_t>(config_.webhooks.max_in_flight)) {
        auto rows = deliveries_.claim_due(config_.webhooks.retry_claim_batch, lease_s(config_.webhooks));
        claimed = rows.size();
        stats_.retries_claimed += claimed;
        for (auto& row : rows) {
          auto endpoint = directory_.find(row.tenant_id, row.endpoint_id);
          Delivery d{endpoint.value_or(WebhookEndpoint{row.endpoint_id, row.tenant_id}), row.event_id, row.event_type,
                     row.session, std::make_shared<const std::string>(std::move(row.body)), row.attempts + 1, row.id};
          if (!endpoint || !endpoint->enabled) {
            const auto why = !endpoint ? std::string("endpoint deleted")
                                       : "endpoint disabled (" + endpoint->disabled_reason.value_or("by its owner") +
                                             "); re-enable it and replay to deliver";
            auto dec = dead_letter_unattempted(d, why);
            recorder_.submit(std::move(d), std::move(dec), {});
            continue;
          }
          engine_.submit(std::move(d), [this](Delivery dd, std::optional<DeliveryAttempt> a) {
            auto dec = decide_now(dd, a);
            recorder_.submit(std::move(dd), std::move(dec), {});
          });
        }
      }
      if (Steady::now() - last_purge >= std::chrono::minutes(10)) {
        last_purge = Steady::now();
        purge_expired();
      }
    } catch (const std::exception& e) {
      log::warn("webhooks.retry_poll_failed", {{"detail", e.what()}});
    }
    if (claimed == static_cast<std::size_t>(config_.webhooks.retry_claim_batch)) continue;  // more are due
    std::unique_lock lock(retry_mu_);
    retry_cv_.wait_for(lock, interval, [&] { return stop.load(); });
  }
}

void WebhookDispatcher::purge_expired() {
  // In batches, so no transaction holds many locks; bounded per sweep so retries keep flowing.
  constexpr int kBatch = 10000;
  const auto deadline = Steady::now() + std::chrono::seconds(20);
  const int days = config_.webhooks.event_retention_days;
  std::size_t events = 0, attempts = 0, n = 0;
  do events += n = events_.purge_older_than(days, kBatch);
  while (n == kBatch && Steady::now() < deadline);
  do attempts += n = deliveries_.purge_attempts_older_than(days, kBatch);
  while (n == kBatch && Steady::now() < deadline);
  if (events + attempts > 0)
    log::info("webhooks.retention_purged", {{"events", std::to_string(events)}, {"attempts", std::to_string(attempts)},
                                            {"older_than_days", std::to_string(days)}});
}

void WebhookDispatcher::commit_finished(const std::vector<kafka::TopicPartition>* only) {
  progress_.commit(*consumer_, only, "webhooks");
}

void WebhookDispatcher::apply_backpressure() {
  const auto buffered = buffered_.load();
  const auto change = backpressure_.update(buffered, static_cast<std::size_t>(config_.webhooks.max_buffered));
  if (!change) return;
  const auto parts = progress_.owned();
  if (*change) consumer_->pause(parts);
  else consumer_->resume(parts);
  log::info(*change ? "webhooks.paused" : "webhooks.resumed", {{"buffered", str(buffered)}});
}

void WebhookDispatcher::on_assigned(const std::vector<kafka::TopicPartition>& parts) {
  progress_.assign(parts);
  std::string names;
  for (const auto& tp : parts) names += (names.empty() ? "" : ",") + std::to_string(tp.partition);
  if (backpressure_.paused()) consumer_->pause(parts);
  log::info("webhooks.assigned", {{"partitions", names}});
}

void WebhookDispatcher::on_revoked(const std::vector<kafka::TopicPartition>& parts, bool lost) {
  // Deliveries in flight are bounded by the attempt timeout: wait (bounded) so their offsets commit.
  if (!lost) {
    progress_.wait_idle(parts, Steady::now() + std::chrono::milliseconds(config_.worker.revoke_drain_timeout_ms));
    commit_finished(&parts);
  }
  const auto unfinished = progress_.remove(parts);
  std::string names;
  for (const auto& tp : parts) names += (names.empty() ? "" : ",") + std::to_string(tp.partition);
  log::info("webhooks.revoked", {{"partitions", names}, {"lost", lost ? "true" : "false"},
                                 {"unfinished", std::to_string(unfinished)}});
}

}  // namespace sb
