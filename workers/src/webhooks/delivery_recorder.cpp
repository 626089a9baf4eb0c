#include "switchboard/workers/webhooks/delivery_recorder.hpp"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <chrono>
#include <set>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

constexpr std::size_t kBatchMax = 2000;
// A live delivery waits for its event's insert: the first such event wakes the writer, which
// lingers this long (at most record_linger_ms) so concurrent ones share the statement, instead
// of waiting out the next record_linger_ms tick (10 ms on average at the default 20).
constexpr std::chrono::milliseconds kEventLinger{2};

}  // namespace

DeliveryRecorder::DeliveryRecorder(const Config& config, pg::Pool& pool, kafka::Producer& producer,
                                   kafka::ReliablePublisher& publisher, Disabled on_disabled, RetryPolicy policy)
    : config_(config),
      producer_(producer),
      publisher_(publisher),
      on_disabled_(std::move(on_disabled)),
      policy_(policy),
      deliveries_(pool),
      endpoints_(pool),
      dlq_topic_(config.topic("sb.webhooks.dlq")),
      events_topic_(config.topic("sb.events")),
      thread_([this] { loop(); }) {}

DeliveryRecorder::~DeliveryRecorder() { stop(); }

void DeliveryRecorder::submit(Delivery delivery, Decision decision, Durable on_durable) {
  Outcome o{std::move(delivery), std::move(decision), std::move(on_durable)};
  if (o.decision.action == Decision::Action::DeadLetter) return dead_letter(std::move(o));
  enqueue(std::move(o));
}

void DeliveryRecorder::enqueue(Outcome o) {
  std::lock_guard lock(mu_);
  const bool first = pending_.empty();
  pending_.outcomes.push_back(std::move(o));
  if (first || pending_.outcomes.size() >= kBatchMax) cv_.notify_one();
}

void DeliveryRecorder::record_event(StoredEvent event, Durable on_durable) {
  std::lock_guard lock(mu_);
  const bool first = pending_.events.empty();  // wakes an idle writer and cuts an outcome linger short
  pending_.events.push_back(std::move(event));
  pending_.event_callbacks.push_back(std::move(on_durable));
  if (first || pending_.events.size() >= kBatchMax) cv_.notify_one();
}

void DeliveryRecorder::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stopper_.request_stop();
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void DeliveryRecorder::loop() {
  const auto linger = std::chrono::milliseconds(config_.webhooks.record_linger_ms);
  const auto event_linger = std::min(linger, kEventLinger);
  for (;;) {
    Batch batch;
    {
      std::unique_lock lock(mu_);
      // Idle: asleep until something is submitted (no periodic wake-ups).
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      // Outcomes linger record_linger_ms to share one transaction; an event (a delivery waits
      // on it) cuts that short to event_linger.
      cv_.wait_for(lock, linger, [&] {
        return stopping_ || !pending_.events.empty() || pending_.outcomes.size() >= kBatchMax;
      });
      if (!pending_.events.empty() && !stopping_)
        cv_.wait_for(lock, event_linger, [&] { return stopping_ || pending_.events.size() >= kBatchMax; });
      if (pending_.empty()) {
        if (stopping_) return;
        continue;
      }
      std::swap(batch, pending_);
    }
    write(batch);
  }
}

void DeliveryRecorder::dead_letter(Outcome o) {
  // Kafka first, then the attempt log and the schedule: a crash in between repeats the dead
  // letter, never loses it. The publisher retries passing refusals on its own timer (the
  // delivery stays unfinished meanwhile); a permanent refusal is logged and let go.
  const auto& d = o.delivery;
  kafka::Headers extra = {{"sb-webhook-endpoint", d.endpoint.id},
                          {"sb-webhook-url", d.endpoint.url},
                          {"sb-webhook-event", d.event_id},
                          {"sb-webhook-attempts", std::to_string(o.decision.failed_attempts)}};
  const kafka::TopicPartition source = d.source_offset >= 0 ? d.source : kafka::TopicPartition{events_topic_, -1};
  auto headers = kafka::dead_letter_headers(source, d.source_offset, "webhook_undeliverable", o.decision.reason,
                                            std::move(extra));
  auto shared = std::make_shared<Outcome>(std::move(o));
  publisher_.publish(
      dlq_topic_, shared->delivery.endpoint.tenant_id, *shared->delivery.body, std::move(headers),
      [this, shared] {
        sb::log::warn("webhooks.dead_lettered", {{"tenant", shared->delivery.endpoint.tenant_id},
                                                 {"endpoint", shared->delivery.endpoint.id},
                                                 {"event_id", shared->delivery.event_id},
                                                 {"reason", shared->decision.reason}});
        enqueue(std::move(*shared));
      },
      [this, shared](const Error& why) {
        sb::log::error("webhooks.dead_letter_refused", {{"endpoint", shared->delivery.endpoint.id},
                                                        {"event_id", shared->delivery.event_id}, {"error", why.what()}});
        if (shared->decision.log) {
          shared->decision.log->error = shared->decision.reason + " (sb.webhooks.dlq refused it: " + why.what() + ")";
        }
        enqueue(std::move(*shared));
      });
}

template <typename F>
bool DeliveryRecorder::with_retries(const char* what, std::size_t rows, F&& f) {
  for (int attempt = 1;; ++attempt) {
    try {
      f();
      return true;
    } catch (const std::exception& e) {
      const auto d = policy_.after(e, attempt, rng_);
      if (!d.retry) throw;
      ++stats_.outages;
      sb::log::warn("webhooks.record_unavailable", {{"what", what}, {"rows", std::to_string(rows)},
                                                    {"attempt", std::to_string(attempt)},
                                                    {"delay_ms", std::to_string(d.delay.count())}, {"detail", e.what()}});
      if (!stopper_.sleep_for(d.delay)) return false;  // stopping: left to the next owner
    }
  }
}

bool DeliveryRecorder::write_health(std::vector<std::string>& failed, std::vector<std::string>& succeeded,
                                    std::vector<std::pair<std::string, std::string>>& disable,
                                    std::set<std::string>& seen) {
  try {
    return with_retries("endpoint_health", failed.size() + succeeded.size() + disable.size(), [&] {
      if (!failed.empty() || !succeeded.empty()) {
        for (const auto& id : endpoints_.record_health(failed, succeeded, config_.webhooks.disable_after_s))
          if (seen.insert(id).second)
            disable.emplace_back(id, "failing without a success for more than " +
                                         std::to_string(config_.webhooks.disable_after_s) + " s");
        failed.clear();
        succeeded.clear();
      }
      if (!disable.empty()) {
        disable_endpoints(disable);
        disable.clear();
      }
    });
  } catch (const std::exception& e) {
    // Not retryable: health is advisory, and the endpoint's next failure redoes the check.
    ++stats_.refused;
    sb::log::error("webhooks.health_refused", {{"detail", e.what()}});
    return true;
  }
}

void DeliveryRecorder::refused(Outcome& o, const std::string& why) {
  using A = Decision::Action;
  ++stats_.refused;
  const auto& d = o.delivery;
  sb::log::error("webhooks.record_refused", {{"endpoint", d.endpoint.id}, {"event_id", d.event_id},
                                             {"scheduled_id", std::to_string(d.scheduled_id)}, {"detail", why}});
  if (o.decision.action == A::Retry || o.decision.action == A::Park) {
    // It can't wait in the schedule: dead-letter it rather than lose or loop on it.
    o.decision.action = A::DeadLetter;
    o.decision.reason = "cannot be scheduled for retry: " + why;
    o.decision.log.reset();  // the attempt log is what PostgreSQL refused (or may be)
    auto shared = std::make_shared<Outcome>(std::move(o));
    const kafka::TopicPartition source =
        shared->delivery.source_offset >= 0 ? shared->delivery.source : kafka::TopicPartition{events_topic_, -1};
    auto done = [shared] {
      if (shared->on_durable) shared->on_durable();
    };
    publisher_.publish(dlq_topic_, shared->delivery.endpoint.tenant_id, *shared->delivery.body,
                       kafka::dead_letter_headers(source, shared->delivery.source_offset, "webhook_unrecordable",
                                                  shared->decision.reason,
                                                  {{"sb-webhook-endpoint", shared->delivery.endpoint.id},
                                                   {"sb-webhook-url", shared->delivery.endpoint.url},
                                                   {"sb-webhook-event", shared->delivery.event_id}}),
                       done, [done](const Error&) { done(); });
    o.on_durable = nullptr;  // runs once the dead letter is acked
    return;
  }
  // Delivered / dead-lettered / gone: the outcome itself happened; only its log line is lost.
}

void DeliveryRecorder::write(Batch& batch) {
  using A = Decision::Action;
  // 1. Endpoint health: who to disable (410, or failing for longer than disable_after_s).
  std::vector<std::string> failed, succeeded;
  std::vector<std::pair<std::string, std::string>> disable;
  std::set<std::string> seen;
  for (const auto& o : batch.outcomes) {
    const auto& id = o.delivery.endpoint.id;
    if (o.decision.action == A::Gone && seen.insert(id).second) disable.emplace_back(id, o.decision.reason);
    // Every failing endpoint is checked (failing for too long?); marking it is a no-op when already marked.
    if (o.decision.endpoint_failed && std::find(failed.begin(), failed.end(), id) == failed.end()) {
      failing_[id] = true;
      failed.push_back(id);
    }
    if (o.decision.endpoint_succeeded) {
      auto it = failing_.find(id);
      if (it == failing_.end() || it->second) succeeded.push_back(id);  // unknown: may be marked in the DB
      failing_[id] = false;
    }
  }
  if (failing_.size() > 100000) failing_.clear();  // bounded; unknown costs one idempotent write
  if (!write_health(failed, succeeded, disable, seen)) return;

  // 2. Outcomes and events: one transaction per (sub)batch. Items [0, outcomes) are outcomes,
  // the rest events; a refused batch is halved until the refused items are alone.
  const std::size_t n_out = batch.outcomes.size();
  const std::size_t n = n_out + batch.events.size();
  std::vector<bool> written(n, false);
  auto changes_of = [&](std::size_t b, std::size_t e) {
    DeliveryChanges changes;
    for (std::size_t i = b; i < e; ++i) {
      if (i >= n_out) {
        changes.events.push_back(batch.events[i - n_out]);
        continue;
      }
      const auto& d = batch.outcomes[i].delivery;
      const auto& dec = batch.outcomes[i].decision;
      if (dec.log) changes.attempts.push_back(*dec.log);
      switch (dec.action) {
        case A::Delivered:
        case A::Gone:
        case A::DeadLetter:
          if (!d.live()) changes.complete.push_back(d.scheduled_id);
          break;
        case A::Retry:
        case A::Park:
          if (d.live()) {
            ScheduledDelivery s;
            s.endpoint_id = d.endpoint.id;
            s.tenant_id = d.endpoint.tenant_id;
            s.event_id = d.event_id;
            s.event_type = d.event_type;
            s.session = d.session;
            s.body = *d.body;
            s.attempts = dec.failed_attempts;
            s.due_in_s = dec.due_in_s;
            s.ordered = d.ordered();
            changes.schedule.push_back(std::move(s));
          } else {
            changes.reschedule.push_back({d.scheduled_id, dec.failed_attempts, dec.due_in_s});
          }
          break;
      }
    }
    return changes;
  };
  bool interrupted = false;
  std::function<void(std::size_t, std::size_t)> run_split = [&](std::size_t b, std::size_t e) {
    if (b >= e || interrupted) return;
    try {
      const auto changes = changes_of(b, e);
      if (!with_retries("deliveries", e - b, [&] { deliveries_.apply(changes); })) {
        interrupted = true;
        return;
      }
      std::fill(written.begin() + static_cast<std::ptrdiff_t>(b), written.begin() + static_cast<std::ptrdiff_t>(e), true);
    } catch (const std::exception& err) {
      if (e - b > 1) {
        const std::size_t mid = b + (e - b) / 2;  // isolate the rows PostgreSQL refuses
        run_split(b, mid);
        run_split(mid, e);
        return;
      }
      if (b < n_out) {
        auto& o = batch.outcomes[b];
        if (o.decision.log) {
          // Most likely the attempt-log line is what PostgreSQL refuses: keep the schedule
          // change (park / complete) durable without it, so the delivery is neither lost nor
          // attempted again.
          sb::log::error("webhooks.attempt_log_refused", {{"endpoint", o.delivery.endpoint.id},
                                                          {"event_id", o.delivery.event_id}, {"detail", err.what()}});
          o.decision.log.reset();
          try {
            const auto changes = changes_of(b, e);
            if (changes.empty() || with_retries("deliveries", 1, [&] { deliveries_.apply(changes); })) {
              ++stats_.refused;  // its log line is lost, the rest is durable
              written[b] = true;
              return;
            }
            interrupted = true;
            return;
          } catch (const std::exception& again) {
            refused(o, again.what());
            written[b] = true;
            return;
          }
        }
        refused(o, err.what());
      } else {
        ++stats_.refused;
        sb::log::error("webhooks.event_refused", {{"event_id", batch.events[b - n_out].id}, {"detail", err.what()}});
      }
      written[b] = true;  // moved aside: its callback runs (the event is not replayable)
    }
  };
  run_split(0, n);
  if (interrupted) return;  // stopping during an outage: offsets stay uncommitted, nothing is lost

  stats_.batches++;
  for (std::size_t i = 0; i < n_out; ++i) {
    auto& o = batch.outcomes[i];
    switch (o.decision.action) {
      case A::Delivered: stats_.delivered++; break;
      case A::Retry: stats_.failed++; break;
      case A::Park: stats_.parked++; break;
      case A::DeadLetter: stats_.dead_lettered++; break;
      case A::Gone: stats_.failed++; break;
    }
    if (o.on_durable) o.on_durable();
  }
  for (auto& cb : batch.event_callbacks)
    if (cb) cb();
}

void DeliveryRecorder::disable_endpoints(const std::vector<std::pair<std::string, std::string>>& id_reason) {
  for (const auto& entry : id_reason) {
    // Named references, not a structured binding: clang 14 cannot capture one in a lambda.
    const std::string& id = entry.first;
    const std::string& reason = entry.second;
    auto done = endpoints_.disable(id, reason, [&](const WebhookEndpoint& e) {
      // Deterministic id: a retried disable (its transaction failed after the publish) repeats it.
      nlohmann::json event = {{"id", uuid_from_name("webhook.endpoint.disabled/" + e.id + "/" + e.updated_at)},
                              {"type", "webhook.endpoint.disabled"},
                              {"tenant", e.tenant_id},
                              {"session", nullptr},
                              {"occurred_at", now_rfc3339()},
                              {"data", {{"endpoint_id", e.id}, {"url", e.url}, {"reason", reason}}}};
      // Inside the disable's transaction, bounded by the producer's message.timeout.ms: the
      // endpoint is disabled only once its event is on sb.events.
      auto ack = producer_.produce(events_topic_, e.tenant_id, event.dump(),
                                   {{"sb-event-type", "webhook.endpoint.disabled"}});
      const auto r = ack.get();
      if (!r.ok()) throw Unavailable("cannot publish webhook.endpoint.disabled for endpoint " + e.id + ": " + r.error);
    });
    if (done) {
      stats_.endpoints_disabled++;
      if (on_disabled_) on_disabled_(*done);
      sb::log::warn("webhooks.endpoint_disabled",
                    {{"tenant", done->tenant_id}, {"endpoint", id}, {"reason", reason}});
    }
  }
}

}  // namespace sb
