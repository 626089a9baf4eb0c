#include "switchboard/workers/callbacks/callback_worker.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "switchboard/core/events.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/ops_server.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/workers/providers/engine_client.hpp"

namespace sb {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {
PartitionedConsumer::Options consumer_options(const Config& c) {
  PartitionedConsumer::Options o;
  o.group = c.topic("sb-callbacks");
  o.topics = {c.topic("sb.callbacks")};
  o.who = "callbacks";
  o.commit_interval_ms = c.worker.commit_interval_ms;
  o.max_buffered = static_cast<std::size_t>(c.worker.max_buffered);
  o.drain_timeout_ms = c.worker.revoke_drain_timeout_ms;
  o.batch_max = c.callbacks.batch_max;
  return o;
}

const char* receipt_event_type(const std::string& status) {
  if (status == "delivered") return "message.delivered";
  if (status == "read") return "message.read";
  return "message.failed";
}
}  // namespace

std::string CallbackWorker::Item::receipt_key() const {
  if (callback.value("kind", "") != "receipt") return {};
  const auto& d = callback["data"];
  return callback.value("tenant", "") + "/" + (d.is_object() ? d.value("provider_message_id", "") : std::string());
}

CallbackWorker::CallbackWorker(const Config& config)
    : config_(config),
      pool_(config.postgres),
      sessions_(pool_),
      nodes_(pool_, config.engine, SecretBox(config.secrets.key)),
      receipts_(pool_),
      producer_(config.kafka),
      publisher_(producer_),
      retry_(RetryPolicy::Options{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 2.0, 0.2, 0}),
      thread_([this] { loop(); }) {}

CallbackWorker::~CallbackWorker() {
  stopper_.request_stop();
  cv_.notify_all();
  thread_.join();
}

void CallbackWorker::on_records(std::vector<ConsumedRecord> records) {
  std::vector<Item> items;
  for (auto& r : records) {
    ++stats_.received;
    Item it;
    try {
      it.callback = parse_json(r.value);
      if (!it.callback.is_object() || !it.callback.contains("kind") || !it.callback.contains("tenant") ||
          !it.callback.contains("session") || !it.callback.contains("data") || r.key != it.callback.value("tenant", ""))
        throw InvalidInput("not a callback record (schemas/callbacks/callback.json) keyed by its tenant");
    } catch (const std::exception& e) {
      // Intake wrote it, so this is a foreign producer's record: logged and skipped, never a wedge.
      ++stats_.invalid;
      log::warn("callbacks.invalid_record", {{"partition", std::to_string(r.source.partition)}, {"offset", std::to_string(r.offset)},
                                             {"detail", e.what()}});
      std::lock_guard lock(consumer_mu_);
      if (consumer_) consumer_->finished(r);
      continue;
    }
    it.record = std::move(r);
    it.first_seen = SteadyClock::now();
    items.push_back(std::move(it));
  }
  {
    std::lock_guard lock(mu_);
    for (auto& it : items) incoming_.push_back(std::move(it));
  }
  cv_.notify_one();
}

void CallbackWorker::on_revoking(const std::vector<kafka::TopicPartition>& parts) {
  std::lock_guard lock(mu_);
  auto gone = [&](const Item& it) { return std::find(parts.begin(), parts.end(), it.record.source) != parts.end(); };
  std::map<std::pair<kafka::TopicPartition, uint64_t>, std::size_t> counts;
  for (auto* q : {&incoming_, &waiting_}) {
    for (const auto& it : *q)
      if (gone(it)) ++counts[{it.record.source, it.record.epoch}];
    q->erase(std::remove_if(q->begin(), q->end(), gone), q->end());
  }
  std::lock_guard c(consumer_mu_);
  if (consumer_)
    for (const auto& [k, n] : counts) consumer_->released(k.first, k.second, n);
}

void CallbackWorker::loop() {
  while (!stopper_.stopping()) {
    std::vector<Item> batch;
    {
      std::unique_lock lock(mu_);
      auto next_due = [&] {
        auto t = SteadyClock::time_point::max();
        for (const auto& w : waiting_) t = std::min(t, w.next_try);
        return t;
      };
      cv_.wait_until(lock, std::min(next_due(), SteadyClock::now() + std::chrono::seconds(1)),
                     [&] { return stopper_.stopping() || !incoming_.empty(); });
      if (stopper_.stopping()) return;
      if (config_.callbacks.linger_ms > 0 && incoming_.size() < static_cast<std::size_t>(config_.callbacks.batch_max)) {
        cv_.wait_for(lock, std::chrono::milliseconds(config_.callbacks.linger_ms),
                     [&] { return stopper_.stopping() || incoming_.size() >= static_cast<std::size_t>(config_.callbacks.batch_max); });
      }
      const auto now = SteadyClock::now();
      // A due receipt brings every waiting receipt of its message along, in arrival order.
      std::set<std::string> due;
      for (const auto& w : waiting_)
        if (w.next_try <= now) due.insert(w.receipt_key());
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (due.count(it->receipt_key())) {
          batch.push_back(std::move(*it));
          it = waiting_.erase(it);
        } else {
          ++it;
        }
      }
      while (!incoming_.empty() && batch.size() < static_cast<std::size_t>(config_.callbacks.batch_max) * 2) {
        batch.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
    }
    if (batch.empty()) continue;
    for (int attempt = 1; !stopper_.stopping(); ++attempt) {
      try {
        process(std::move(batch));
        break;
      } catch (const std::exception& e) {
        // PostgreSQL is down: nothing of this batch was acknowledged; try it again.
        const auto d = retry_.after(e, attempt, rng_);
        log::warn("callbacks.dependency_unavailable", {{"attempt", std::to_string(attempt)}, {"detail", e.what()}});
        if (!stopper_.sleep_for(d.retry ? d.delay : std::chrono::milliseconds(1000))) return;
      }
    }
  }
}

void CallbackWorker::publish_then_finish(const ConsumedRecord& record, std::vector<json> events) {
  auto finish = [this, record] {
    std::lock_guard lock(consumer_mu_);
    if (consumer_) consumer_->finished(record);
  };
  if (events.empty()) return finish();
  auto left = std::make_shared<std::atomic<std::size_t>>(events.size());
  stats_.events += events.size();
  for (auto& e : events) {
    const std::string tenant = e["tenant"], type = e["type"];
    publisher_.publish(config_.topic("sb.events"), tenant, e.dump(), {{"sb-event-type", type}},
                       [left, finish] {
                         if (--*left == 0) finish();
                       },
                       [record, type](const Error& err) {
                         // Refused for good (never for a well-formed event): logged; the record
                         // stays unfinished, so its offset does not commit past it.
                         log::error("callbacks.event_refused", {{"type", type}, {"offset", std::to_string(record.offset)},
                                                                {"detail", err.what()}});
                       });
  }
}

void CallbackWorker::process(std::vector<Item> batch) {
  // Receipts and inbound messages are batched; statuses go one by one, in order (they are few
  // and each may fetch a QR).
  std::vector<Item*> receipts, inbound;
  std::vector<std::pair<Item*, std::vector<json>>> done;
  for (auto& it : batch) {
    const std::string kind = it.callback.value("kind", "");
    if (kind == "receipt") receipts.push_back(&it);
    else if (kind == "inbound") inbound.push_back(&it);
  }
  statuses(batch, done);

  if (!receipts.empty()) {
    // A receipt whose message still has earlier receipts waiting (not due yet) waits behind them:
    // applied now, a READ could overtake its DEVICE and the delivered would count as late.
    {
      std::lock_guard lock(mu_);
      std::map<std::string, SteadyClock::time_point> held;
      for (const auto& w : waiting_) {
        auto [at, fresh] = held.emplace(w.receipt_key(), w.next_try);
        if (!fresh) at->second = std::min(at->second, w.next_try);
      }
      if (!held.empty())
        receipts.erase(std::remove_if(receipts.begin(), receipts.end(), [&](Item* it) {
                         auto h = held.find(it->receipt_key());
                         if (h == held.end()) return false;
                         it->next_try = h->second;
                         waiting_.push_back(std::move(*it));
                         return true;
                       }),
                       receipts.end());
    }
  }
  if (!receipts.empty()) {
    std::vector<Receipt> rs;
    for (auto* it : receipts) {
      const auto& d = it->callback["data"];
      Receipt r{it->callback["tenant"], d.value("provider_message_id", ""), d.value("status", ""), it->callback.value("at", now_rfc3339()),
                std::nullopt};
      if (d.contains("error") && d["error"].is_string()) r.error = d["error"].get<std::string>();
      rs.push_back(std::move(r));
    }
    const auto applied = receipts_.apply(rs);
    for (std::size_t i = 0; i < receipts.size(); ++i) {
      auto* it = receipts[i];
      const auto& a = applied[i];
      const auto& r = rs[i];
      ++stats_.receipts;
      if (a.effect == AppliedReceipt::Effect::Unmatched && r.status == "sent") {
        done.push_back({it, {}});  // says nothing our own outcome won't: no need to wait for it
        continue;
      }
      if (a.effect == AppliedReceipt::Effect::Unmatched) {
        const auto waited = SteadyClock::now() - it->first_seen;
        if (waited < std::chrono::seconds(config_.callbacks.unmatched_retry_s)) {
          ++stats_.unmatched_waits;
          it->next_try = SteadyClock::now() + std::min(std::chrono::milliseconds(200) * (1 << std::min(it->attempts++, 5)),
                                                       std::chrono::milliseconds(5000));
          std::lock_guard lock(mu_);
          waiting_.push_back(std::move(*it));
          continue;
        }
        ++stats_.unmatched_dropped;
        log::warn("callbacks.unmatched_receipt", {{"tenant", r.tenant_id}, {"provider_message_id", r.provider_message_id},
                                                  {"status", r.status}, {"detail", "no message has this provider id; given up"}});
        done.push_back({it, {}});
        continue;
      }
      std::vector<json> events;
      if ((a.effect == AppliedReceipt::Effect::Forward || a.effect == AppliedReceipt::Effect::Duplicate) && r.status != "sent") {
        json data = {{"message_id", a.message_id}, {"provider_message_id", r.provider_message_id}, {"to", a.to}, {"at", r.at}};
        if (r.status == "failed") {
          data["error"] = r.error.value_or("failed at the provider");
          data["reason"] = "provider_failed";
        }
        events.push_back(make_event(receipt_event_type(r.status), r.tenant_id, a.session, r.at, data, a.message_id));
      }
      if (a.effect == AppliedReceipt::Effect::Backward)
        log::info("callbacks.late_receipt", {{"tenant", r.tenant_id}, {"message_id", a.message_id}, {"status", r.status}});
      done.push_back({it, std::move(events)});
    }
  }

  if (!inbound.empty()) {
    std::vector<Inbound> ms;
    for (auto* it : inbound) {
      const auto& d = it->callback["data"];
      ms.push_back({it->callback["tenant"], it->callback["session"], d.value("provider_message_id", ""), d.value("from", ""),
                    d.value("text", ""), it->callback.value("at", now_rfc3339())});
    }
    receipts_.record_inbound(ms);
    for (std::size_t i = 0; i < inbound.size(); ++i) {
      ++stats_.inbound;
      const auto& m = ms[i];
      json data = {{"message_id", m.id()}, {"provider_message_id", m.provider_message_id}, {"from", m.from}, {"text", m.text}};
      log::info("message.received", {{"tenant", m.tenant_id}, {"session", m.session}, {"message_id", m.id()}});
      done.push_back({inbound[i], {make_event("message.received", m.tenant_id, m.session, m.at, data, m.id())}});
    }
  }
  for (auto& [it, events] : done) publish_then_finish(it->record, std::move(events));
}

void CallbackWorker::statuses(std::vector<Item>& items, std::vector<std::pair<Item*, std::vector<json>>>& done) {
  for (auto& it : items) {
    if (it.callback.value("kind", "") != "status") continue;
    ++stats_.statuses;
    const std::string tenant = it.callback["tenant"], session = it.callback["session"];
    const auto& d = it.callback["data"];
    const std::string raw = d.value("status", "");
    const std::string status = normalize_session_status(raw);
    std::optional<std::string> account;
    if (d.contains("account") && d["account"].is_string()) account = d["account"].get<std::string>();
    SessionStatusChange change{status, status == raw ? std::nullopt : std::optional<std::string>(raw),
                               std::optional<std::string>("reported by the provider"), it.callback.value("at", now_rfc3339())};
    std::vector<json> events;
    std::optional<int64_t> generation;
    if (d.contains("generation") && d["generation"].is_number_integer()) generation = d["generation"].get<int64_t>();
    // from_provider: a PAUSED session (pacing's ban signals) is not made WORKING by its engine.
    const auto applied =
        sessions_.set_status(tenant, session, change, status == "WORKING" ? account : std::nullopt, false, generation, true);
    if (applied.pause_kept)
      log::info("session.pause_kept", {{"tenant", tenant}, {"session", session}, {"reported", raw},
                                       {"detail", "paused by pacing: stays PAUSED until its cool-down or POST resume"}});
    if (applied.stale)
      log::info("session.status_stale", {{"tenant", tenant}, {"session", session}, {"status", status},
                                         {"detail", "reported by a node the session has been moved from"}});
    if (applied.previous) {
      log::info("session.status", {{"tenant", tenant}, {"session", session}, {"status", status}, {"previous", *applied.previous}});
      events.push_back(session_status_event(tenant, session, status, applied.previous, change.reason, change.raw_status,
                                            status == "WORKING" ? account : std::nullopt, change.at));
    }
    if (status == "SCAN_QR_CODE" && applied.exists) {
      // Each rotation re-reports SCAN_QR_CODE: fetch the QR shown now; a new value is an event.
      auto s = sessions_.get(tenant, session);
      const auto node = s && s->node ? nodes_.engine_node(*s->node) : std::nullopt;
      if (node && s->engine_name) {
        try {
          EngineClient engine(*node, config_.engine.timeout_ms, s->generation);
          if (auto qr = engine.qr(*s->engine_name); qr && qr->value != s->qr_value.value_or("")) {
            sessions_.set_qr(tenant, session, qr->value, qr->png_base64);
            events.push_back(session_qr_event(tenant, session, qr->value, now_rfc3339()));
          }
        } catch (const ProviderRefused& e) {
          log::warn("session.qr_unavailable", {{"tenant", tenant}, {"session", session}, {"detail", e.what()}});
        }
      }
    }
    done.push_back({&it, std::move(events)});
  }
}

void CallbackWorker::run(const std::atomic<bool>& stop) {
  PartitionedConsumer consumer(config_.kafka, consumer_options(config_), *this);
  {
    std::lock_guard lock(consumer_mu_);
    consumer_ = &consumer;
  }
  OpsServer ops(
      config_.callbacks.ops_listen, "callbacks.ops_listen",
      [this]() -> std::string {
        if (!producer_.reachable(2000)) return "kafka unreachable";
        if (!pool_.reachable()) return "postgresql unreachable";
        return {};
      },
      [this] {
        auto c = [](const char* name, const char* help, uint64_t v) {
          return OpsServer::Metric{name, help, "counter", static_cast<double>(v), ""};
        };
        return std::vector<OpsServer::Metric>{
            c("switchboard_callbacks_received_total", "Callback records consumed", stats_.received),
            c("switchboard_callbacks_receipts_total", "Receipts applied", stats_.receipts),
            c("switchboard_callbacks_statuses_total", "Session statuses applied", stats_.statuses),
            c("switchboard_callbacks_inbound_total", "Inbound messages recorded", stats_.inbound),
            c("switchboard_callbacks_unmatched_waits_total", "Receipts that waited for their send's outcome", stats_.unmatched_waits),
            c("switchboard_callbacks_unmatched_dropped_total", "Receipts given up (no such message)", stats_.unmatched_dropped),
            c("switchboard_callbacks_events_total", "Events published", stats_.events)};
      });
  log::info("callbacks.started", {{"topic", config_.topic("sb.callbacks")}});
  consumer.run(stop);
  {
    std::lock_guard lock(consumer_mu_);
    consumer_ = nullptr;
  }
  if (!producer_.flush(5000)) log::warn("callbacks.unflushed", {{"pending", std::to_string(publisher_.pending())}});
  log::info("callbacks.stopped", {{"received", std::to_string(stats_.received)}, {"events", std::to_string(stats_.events)}});
}

}  // namespace sb
