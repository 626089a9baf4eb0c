#include "switchboard/workers/webhooks/delivery_recorder.hpp"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

constexpr std::size_t kBatchMax = 2000;
// A dead letter Kafka wouldn't take is parked and dead-lettered again this much later.
constexpr int kDeadLetterRetryS = 60;

kafka::DeliveryResult wait_for(std::future<kafka::DeliveryResult>& f) {
  return f.get();  // bounded by the producer's message.timeout.ms
}

}  // namespace

DeliveryRecorder::DeliveryRecorder(const Config& config, pg::Pool& pool, kafka::Producer& producer,
                                   Disabled on_disabled)
    : config_(config),
      producer_(producer),
      on_disabled_(std::move(on_disabled)),
      deliveries_(pool),
      endpoints_(pool),
      events_(pool),
      dlq_topic_(config.topic("sb.webhooks.dlq")),
      events_topic_(config.topic("sb.events")),
      thread_([this] { loop(); }) {}

DeliveryRecorder::~DeliveryRecorder() { stop(); }

void DeliveryRecorder::submit(Delivery delivery, Decision decision, Durable on_durable) {
  std::lock_guard lock(mu_);
  pending_.outcomes.push_back({std::move(delivery), std::move(decision), std::move(on_durable)});
  if (pending_.outcomes.size() >= kBatchMax) cv_.notify_one();
}

void DeliveryRecorder::record_event(StoredEvent event, Durable on_durable) {
  std::lock_guard lock(mu_);
  pending_.events.push_back(std::move(event));
  pending_.event_callbacks.push_back(std::move(on_durable));
  if (pending_.events.size() >= kBatchMax) cv_.notify_one();
}

void DeliveryRecorder::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void DeliveryRecorder::loop() {
  const auto linger = std::chrono::milliseconds(config_.webhooks.record_linger_ms);
  for (;;) {
    Batch batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, linger, [&] { return stopping_; });
      if (pending_.empty()) {
        if (stopping_) return;
        continue;
      }
      std::swap(batch, pending_);
    }
    write(batch);
  }
}

void DeliveryRecorder::write(Batch& batch) {
  using A = Decision::Action;
  // 1. Dead letters go to Kafka first; one Kafka wouldn't take is parked to try again later.
  std::vector<const Outcome*> dead;
  for (const auto& o : batch.outcomes)
    if (o.decision.action == A::DeadLetter) dead.push_back(&o);
  if (!dead.empty()) dead_letter(dead);

  // 2. Endpoint health: who to disable (410, or failing for longer than disable_after_s).
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

  // 3. Everything else in one transaction; retried as a whole until PostgreSQL takes it.
  DeliveryChanges changes;
  for (const auto& o : batch.outcomes) {
    const auto& d = o.delivery;
    const auto& dec = o.decision;
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
  for (int tries = 0;; ++tries) {
    try {
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
      deliveries_.apply(changes);
      changes = {};
      events_.record(batch.events);
      batch.events.clear();
      break;
    } catch (const std::exception& e) {
      sb::log::error("webhooks.record_failed", {{"error", e.what()}, {"outcomes", std::to_string(batch.outcomes.size())},
                                                {"retry_in_ms", "1000"}, {"tries", std::to_string(tries + 1)}});
      {
        std::unique_lock lock(mu_);
        // While stopping, give up after a few tries: offsets stay uncommitted, nothing is lost.
        if (stopping_ && tries >= 3) return;
        cv_.wait_for(lock, std::chrono::seconds(1));
      }
    }
  }
  stats_.batches++;
  for (const auto& o : batch.outcomes) {
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

void DeliveryRecorder::dead_letter(const std::vector<const Outcome*>& outcomes) {
  std::vector<std::future<kafka::DeliveryResult>> acks;
  for (const auto* o : outcomes) {
    const auto& d = o->delivery;
    kafka::Headers headers = {{"sb-dlq-reason", "webhook_undeliverable"},
                              {"sb-dlq-error", o->decision.reason},
                              {"sb-webhook-endpoint", d.endpoint.id},
                              {"sb-webhook-url", d.endpoint.url},
                              {"sb-webhook-event", d.event_id},
                              {"sb-webhook-attempts", std::to_string(o->decision.failed_attempts)}};
    try {
      acks.push_back(producer_.produce(dlq_topic_, d.endpoint.tenant_id, *d.body, headers));
    } catch (const std::exception& e) {
      std::promise<kafka::DeliveryResult> failed;
      kafka::DeliveryResult r;
      r.err = RD_KAFKA_RESP_ERR__FAIL;
      r.error = e.what();
      failed.set_value(r);
      acks.push_back(failed.get_future());
    }
  }
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    auto* o = const_cast<Outcome*>(outcomes[i]);
    const auto r = wait_for(acks[i]);
    if (r.ok()) {
      sb::log::warn("webhooks.dead_lettered", {{"tenant", o->delivery.endpoint.tenant_id},
                                               {"endpoint", o->delivery.endpoint.id},
                                               {"event_id", o->delivery.event_id},
                                               {"reason", o->decision.reason}});
      continue;
    }
    sb::log::error("webhooks.dead_letter_failed", {{"endpoint", o->delivery.endpoint.id},
                                                   {"event_id", o->delivery.event_id}, {"error", r.error},
                                                   {"retry_in_s", std::to_string(kDeadLetterRetryS)}});
    o->decision.action = Decision::Action::Park;
    o->decision.due_in_s = kDeadLetterRetryS;
    if (o->decision.log) o->decision.log->outcome = "failed";
  }
}

void DeliveryRecorder::disable_endpoints(const std::vector<std::pair<std::string, std::string>>& id_reason) {
  for (const auto& [id, reason] : id_reason) {
    auto done = endpoints_.disable(id, reason, [&](const WebhookEndpoint& e) {
      // Deterministic id: a retried disable (its transaction failed after the publish) repeats it.
      nlohmann::json event = {{"id", uuid_from_name("webhook.endpoint.disabled/" + e.id + "/" + e.updated_at)},
                              {"type", "webhook.endpoint.disabled"},
                              {"tenant", e.tenant_id},
                              {"session", nullptr},
                              {"occurred_at", now_rfc3339()},
                              {"data", {{"endpoint_id", e.id}, {"url", e.url}, {"reason", reason}}}};
      auto ack = producer_.produce(events_topic_, e.tenant_id, event.dump(),
                                   {{"sb-event-type", "webhook.endpoint.disabled"}});
      const auto r = wait_for(ack);
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
