#include "switchboard/workers/webhooks/webhook_dispatcher.hpp"

#include <algorithm>
#include <chrono>

#include "switchboard/core/events.hpp"
#include "switchboard/core/log.hpp"

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

PartitionedConsumer::Options consumer_options(const Config& c) {
  PartitionedConsumer::Options o;
  o.group = c.topic("sb-webhooks");
  o.topics = {c.topic("sb.events")};
  o.who = "webhooks";
  o.commit_interval_ms = c.webhooks.commit_interval_ms;
  o.max_buffered = static_cast<std::size_t>(c.webhooks.max_buffered);
  o.drain_timeout_ms = c.worker.revoke_drain_timeout_ms;  // started attempts end within webhooks.timeout_ms
  return o;
}

}  // namespace

WebhookDispatcher::WebhookDispatcher(const Config& config)
    : config_(config),
      topic_(config.topic("sb.events")),
      dlq_topic_(config.topic("sb.webhooks.dlq")),
      schemas_(config.schemas_dir),
      pool_(config.postgres),
      schedule_(RetrySchedule::parse(config.webhooks.retry_schedule, config.webhooks.retry_jitter)),
      guard_(config.webhooks.allowed_cidrs()),
      directory_(pool_, config.webhooks.endpoint_cache_ms),
      deliveries_(pool_),
      events_(pool_),
      producer_(config.kafka),
      recorder_(config, pool_, producer_, publisher_, [this](const WebhookEndpoint& e) { directory_.invalidate(e.tenant_id); }),
      publisher_(producer_),
      engine_(config.webhooks, guard_),
      consumer_(config.kafka, consumer_options(config), *this) {}

WebhookDispatcher::~WebhookDispatcher() {
  shutdown();
  std::lock_guard lock(finish_mu_);
  closed_ = true;  // from here on a late completion (Kafka ack, engine shut-down callback) is ignored
}

void WebhookDispatcher::shutdown() {
  stopper_.request_stop();
  intake_cv_.notify_all();
  if (intake_thread_.joinable()) intake_thread_.join();
  if (retry_thread_.joinable()) retry_thread_.join();
  recorder_.stop();
}

Decision WebhookDispatcher::decide_now(const Delivery& d, const std::optional<DeliveryAttempt>& a) {
  // The park delay matters (and costs an engine lock) only when no attempt was made.
  return decide(d, a, schedule_, a ? 0 : engine_.park_delay_s(d.endpoint.id), rng());
}

void WebhookDispatcher::run(const std::atomic<bool>& stop) {
  // First, so a port already taken fails before anything starts (ConfigError: exit code 2).
  OpsServer ops(config_.webhooks.ops_listen, "webhooks.ops_listen", [this] { return readiness(); },
                [this] { return metrics(); });
  // Members, not locals: an exception below unwinds into ~WebhookDispatcher, which stops and
  // joins them (a joinable local std::thread would call std::terminate instead).
  intake_thread_ = std::thread([this] { intake_loop(); });
  retry_thread_ = std::thread([this, &stop] { retry_loop(stop); });
  log::info("webhooks.started", {{"topic", topic_}, {"group", config_.topic("sb-webhooks")},
                                 {"max_in_flight", std::to_string(config_.webhooks.max_in_flight)},
                                 {"per_endpoint", std::to_string(config_.webhooks.max_in_flight_per_endpoint)},
                                 {"timeout_ms", std::to_string(config_.webhooks.timeout_ms)}});
  consumer_.run(stop);  // until stop; then drains (bounded), commits and leaves the group
  log::info("webhooks.stopping", {{"in_flight", str(engine_.in_flight())}, {"outstanding", str(engine_.outstanding())}});
  stopper_.request_stop();  // the loops end now, mid back-off included
  intake_cv_.notify_all();
  if (intake_thread_.joinable()) intake_thread_.join();
  if (retry_thread_.joinable()) retry_thread_.join();
  // Let started retries finish (bounded by one attempt's timeout) so their outcomes are
  // written now rather than after their lease runs out.
  const auto deadline = Steady::now() + std::chrono::milliseconds(config_.webhooks.timeout_ms + 2000);
  while (engine_.outstanding() > 0 && Steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  recorder_.stop();
  // Dead letters and endpoint events still in the producer: out before their listeners go.
  if (!producer_.flush(5000)) log::warn("webhooks.unflushed", {{"pending", str(publisher_.pending())}});
  const auto& r = recorder_.stats();
  log::info("webhooks.stopped", {{"events", str(stats_.events)}, {"delivered", str(r.delivered)},
                                 {"failed", str(r.failed)}, {"dead_lettered", str(r.dead_lettered)}});
}

void WebhookDispatcher::log_stats() {
  const auto& r = recorder_.stats();
  log::info("webhooks.stats", {{"events", str(stats_.events)}, {"deliveries", str(stats_.deliveries)},
                               {"delivered", str(r.delivered)}, {"failed", str(r.failed)}, {"parked", str(r.parked)},
                               {"dead_lettered", str(r.dead_lettered)}, {"retries_claimed", str(stats_.retries_claimed)},
                               {"in_flight", str(engine_.in_flight())}, {"buffered", str(consumer_.in_hand())}});
}

std::string WebhookDispatcher::readiness() {
  if (!producer_.reachable(2000)) return "kafka unreachable";
  if (!pool_.reachable()) return "postgresql unreachable";
  return {};
}

std::vector<OpsServer::Metric> WebhookDispatcher::metrics() const {
  engine_.refresh_breaker_metrics();  // a prometheus-cpp family, rendered right after these
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
          c("switchboard_webhooks_record_refused_total", "Outcomes or events PostgreSQL refused for good (moved aside)",
            r.refused),
          {"switchboard_webhooks_in_flight", "HTTP requests in flight", "gauge", static_cast<double>(engine_.in_flight())},
          {"switchboard_webhooks_buffered_events", "Events consumed and not yet finished", "gauge",
           static_cast<double>(consumer_.in_hand())}};
}

void WebhookDispatcher::on_records(std::vector<ConsumedRecord> records) {
  {
    std::lock_guard lock(intake_mu_);
    for (auto& r : records) intake_.push_back(std::move(r));
  }
  intake_cv_.notify_one();
}

void WebhookDispatcher::on_revoking(const std::vector<kafka::TopicPartition>& parts) {
  // Not started: given back (uncommitted) to whoever owns the partition next. A record being
  // handled right now is waited for by the consumer (bounded).
  std::map<std::pair<kafka::TopicPartition, uint64_t>, std::size_t> dropped;
  {
    std::lock_guard lock(intake_mu_);
    std::deque<ConsumedRecord> keep;
    for (auto& r : intake_) {
      if (std::find(parts.begin(), parts.end(), r.source) != parts.end()) ++dropped[{r.source, r.epoch}];
      else keep.push_back(std::move(r));
    }
    intake_.swap(keep);
  }
  for (const auto& [key, n] : dropped) consumer_.released(key.first, key.second, n);
}

void WebhookDispatcher::intake_loop() {
  for (;;) {
    ConsumedRecord r;
    std::optional<StoredFanOut> ready;
    {
      std::unique_lock lock(intake_mu_);
      intake_cv_.wait(lock, [&] { return stopper_.stopping() || !intake_.empty() || !stored_.empty(); });
      if (stopper_.stopping()) return;  // stored but undelivered: offsets unfinished, the next owner redoes them
      if (!stored_.empty()) {  // older than any record still waiting: first
        ready = std::move(stored_.front());
        stored_.pop_front();
      } else {
        r = std::move(intake_.front());
        intake_.pop_front();
      }
    }
    if (ready) {
      for (auto& d : ready->deliveries) deliver_live(std::move(d), ready->progress);
      continue;
    }
    try {
      handle_record(r);
    } catch (const std::exception& e) {
      // Never expected (handle_record moves every failure aside): don't wedge the partition.
      log::error("webhooks.record_failed", {{"partition", std::to_string(r.source.partition)},
                                            {"offset", std::to_string(r.offset)}, {"detail", e.what()}});
      dead_letter_record(r, "internal_error", e.what());
    }
  }
}

void WebhookDispatcher::handle_record(const ConsumedRecord& r) {
  ++stats_.events;
  StoredEvent stored;
  try {
    stored = parse_event_record(r.value, schemas_);
  } catch (const std::exception& e) {
    // A bad record must not stop the partition: park it in the DLQ with the reason.
    ++stats_.invalid_events;
    log::warn("webhooks.invalid_event", {{"topic", r.source.topic}, {"partition", std::to_string(r.source.partition)},
                                         {"offset", std::to_string(r.offset)}, {"key", r.key}, {"detail", e.what()}});
    return dead_letter_record(r, "invalid_event", e.what());
  }

  // Without its endpoints the event can't go anywhere: wait out a PostgreSQL outage (offset
  // held; a stop ends the wait at once and leaves the record to the next owner).
  EndpointDirectory::List endpoints;
  for (int attempt = 1;; ++attempt) {
    try {
      endpoints = directory_.of(stored.tenant_id);
      break;
    } catch (const std::exception& e) {
      const auto d = policy_.after(e, attempt, rng());
      if (!d.retry) {
        log::error("webhooks.endpoints_refused", {{"tenant", stored.tenant_id}, {"detail", e.what()}});
        return dead_letter_record(r, "endpoints_unreadable", e.what());  // poison: moved aside
      }
      log::warn("webhooks.endpoints_unavailable", {{"tenant", stored.tenant_id}, {"detail", e.what()},
                                                   {"attempt", std::to_string(attempt)},
                                                   {"delay_ms", std::to_string(d.delay.count())}});
      if (!stopper_.sleep_for(d.delay)) return consumer_.released(r.source, r.epoch);
    }
  }
  auto ev = std::make_shared<EventProgress>();
  ev->source = r.source;
  ev->offset = r.offset;
  ev->epoch = r.epoch;
  std::vector<Delivery> fan_out;
  auto body = std::make_shared<const std::string>(r.value);
  for (const auto& e : *endpoints)
    if (e.enabled && subscribed(e, stored.type))
      fan_out.push_back(Delivery{e, stored.id, stored.type, stored.session, body, 1, 0, r.source, r.offset});
  ev->remaining = static_cast<int>(fan_out.size()) + 1;  // + storing the event
  stats_.deliveries += fan_out.size();
  // Stored first, delivered once stored: whoever receives an event can replay or redeliver it
  // at once. The fan-out goes back to this thread (only it opens per_session lines), in
  // record order (the recorder calls back in submission order).
  auto deliveries = std::make_shared<std::vector<Delivery>>(std::move(fan_out));
  recorder_.record_event(std::move(stored), [this, ev, deliveries] {
    if (!deliveries->empty()) {
      {
        std::lock_guard lock(intake_mu_);
        stored_.push_back(StoredFanOut{std::move(*deliveries), ev});
      }
      intake_cv_.notify_one();
    }
    finish_one(ev);
  });
}

void WebhookDispatcher::deliver_live(Delivery d, const Progress& ev) {
  if (!d.ordered()) {
    engine_.submit(std::move(d), [this, ev](Delivery dd, std::optional<DeliveryAttempt> a) {
      on_live_attempt(std::move(dd), std::move(a), ev);
    });
    return;
  }
  // per_session: one delivery of a (endpoint, session) in flight at a time (SessionLines).
  const Lines::Key key{d.endpoint.id, d.session.value_or("")};
  Lined item{std::move(d), ev};
  if (lines_.join(key, item, [this](Lined l) { park_behind(std::move(l)); })) return;
  // Unknown (PostgreSQL refuses, or a stop ends the back-off): park behind, which is always
  // safe — the schedule releases an ordered row only after the earlier ones of its session.
  // (Only the intake thread opens lines, so nothing can open this one in between.)
  bool parked_earlier = true;
  for (int attempt = 1;; ++attempt) {
    try {
      parked_earlier = deliveries_.has_pending(item.first.endpoint.id, item.first.session);
      break;
    } catch (const std::exception& e) {
      const auto dec = policy_.after(e, attempt, rng());
      log::warn("webhooks.schedule_unavailable", {{"endpoint", item.first.endpoint.id}, {"detail", e.what()},
                                                  {"attempt", std::to_string(attempt)}});
      if (!dec.retry || !stopper_.sleep_for(dec.delay)) break;
    }
  }
  if (parked_earlier) return park_behind(std::move(item));
  lines_.open(key, item);
  engine_.submit(std::move(item.first), [this, ev](Delivery dd, std::optional<DeliveryAttempt> a) {
    on_ordered_attempt(std::move(dd), std::move(a), ev);
  });
}

void WebhookDispatcher::park_behind(Lined l) {
  auto dec = decide_now(l.first, std::nullopt);
  dec.due_in_s = 0;  // claimable only once the earlier ones are done
  recorder_.submit(std::move(l.first), std::move(dec), [this, ev = l.second] { finish_one(ev); });
}

void WebhookDispatcher::on_live_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev) {
  auto dec = decide_now(d, a);
  recorder_.submit(std::move(d), std::move(dec), [this, ev] { finish_one(ev); });
}

void WebhookDispatcher::on_ordered_attempt(Delivery d, std::optional<DeliveryAttempt> a, const Progress& ev) {
  auto dec = decide_now(d, a);
  const bool parked = dec.action == Decision::Action::Retry || dec.action == Decision::Action::Park;
  const Lines::Key key{d.endpoint.id, d.session.value_or("")};
  // The head first: the schedule keeps insertion order, and later events queue behind it. The
  // line is dropped only once the head's row is written (has_pending sees it from then on).
  auto next = lines_.head_done(
      key, parked,
      [&] {
        recorder_.submit(std::move(d), std::move(dec), [this, ev, key, parked] {
          if (parked) lines_.parked_durable(key);
          finish_one(ev);
        });
      },
      [this](Lined l) { park_behind(std::move(l)); });
  // Outside the lines' lock: the engine may call back at once (parking).
  if (next)
    engine_.submit(std::move(next->first), [this, nev = next->second](Delivery dd, std::optional<DeliveryAttempt> na) {
      on_ordered_attempt(std::move(dd), std::move(na), nev);
    });
}

void WebhookDispatcher::finish_one(const Progress& ev) {
  if (--ev->remaining > 0) return;
  std::lock_guard lock(finish_mu_);
  if (!closed_) consumer_.finished(ev->source, ev->offset, ev->epoch);  // revoked meanwhile: ignored by epoch
}

void WebhookDispatcher::dead_letter_record(const ConsumedRecord& r, const std::string& reason, const std::string& detail) {
  auto ev = std::make_shared<EventProgress>();
  ev->source = r.source;
  ev->offset = r.offset;
  ev->epoch = r.epoch;
  ev->remaining = 1;
  // A dead letter Kafka refuses for good is logged (by the publisher) and let go: nothing else
  // could hold it, and the partition must move on.
  auto done = [this, ev] { finish_one(ev); };
  publisher_.publish(dlq_topic_, r.key, r.value, kafka::dead_letter_headers(r.source, r.offset, reason, detail), done,
                     [done](const Error&) { done(); });
}

void WebhookDispatcher::retry_loop(const std::atomic<bool>& stop) {
  auto last_purge = Steady::now() - std::chrono::hours(1);  // first sweep at start
  auto last_stats = Steady::now();
  const auto interval = std::chrono::milliseconds(config_.webhooks.retry_poll_interval_ms);
  int failures = 0;
  while (!stop.load() && !stopper_.stopping()) {
    std::size_t claimed = 0;
    auto wait = interval;
    try {
      claim_retries(claimed);
      if (Steady::now() - last_purge >= std::chrono::minutes(10)) {
        last_purge = Steady::now();
        purge_expired();
      }
      failures = 0;
    } catch (const std::exception& e) {
      // Retryable: back off per the policy. Anything else is logged loudly and tried again at
      // the normal pace (a query can't be moved aside).
      const auto d = policy_.after(e, ++failures, rng());
      if (d.retry) wait = std::max(wait, d.delay);
      if (d.retry) log::warn("webhooks.retry_poll_failed", {{"detail", e.what()}, {"attempt", std::to_string(failures)}});
      else log::error("webhooks.retry_poll_failed", {{"detail", e.what()}, {"retryable", "false"}});
    }
    if (Steady::now() - last_stats >= std::chrono::seconds(30)) {
      log_stats();
      last_stats = Steady::now();
    }
    if (claimed == static_cast<std::size_t>(config_.webhooks.retry_claim_batch)) continue;  // more are due
    stopper_.sleep_for(wait);
  }
}

void WebhookDispatcher::claim_retries(std::size_t& claimed) {
  // Claim only what can be sent soon: rows wait in the schedule, not in this process.
  if (engine_.outstanding() >= static_cast<std::size_t>(config_.webhooks.max_in_flight)) return;
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

}  // namespace sb
