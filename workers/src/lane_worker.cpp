#include "switchboard/workers/lane_worker.hpp"

#include <algorithm>
#include <chrono>

#include "switchboard/core/events.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/ops_server.hpp"
#include "switchboard/workers/redis_pacer.hpp"
#include "switchboard/workers/sessions/session_lifecycle.hpp"

namespace sb {
namespace {

std::string validate_lane(const std::string& lane) {
  for (const char* l : kLanes)
    if (lane == l) return lane;
  throw ConfigError("unknown lane '" + lane + "': allowed values are high, default, low");
}

LaneCore::Options core_options(const Config& c, const std::string& lane) {
  LaneCore::Options o;
  o.lane = lane;
  o.max_in_flight = static_cast<std::size_t>(c.worker.max_in_flight);
  o.provider_retry = RetryPolicy({std::chrono::milliseconds(c.worker.provider_backoff_ms), std::chrono::milliseconds(30000),
                                  2.0, 0.2, c.worker.provider_attempts});
  o.on_uncertain = c.worker.on_uncertain == "resend" ? LaneCore::OnUncertain::Resend : LaneCore::OnUncertain::Fail;
  o.hold_poll = std::chrono::milliseconds(c.sessions.hold_poll_ms);
  o.hold_max = std::chrono::seconds(c.sessions.not_working == "fail" ? 0 : c.sessions.hold_max_s);
  // Five provider timeouts, at least 10 s: an earlier owner's request held longer than that is
  // beyond what the lookup can be trusted against.
  o.reconcile_trust_after = std::chrono::milliseconds(std::max(10000, 5 * c.provider.timeout_ms));
  return o;
}

PartitionedConsumer::Options consumer_options(const Config& c, const std::string& lane) {
  PartitionedConsumer::Options o;
  o.group = c.topic("sb-workers-" + lane);
  o.topics = {c.topic(lane_topic_base(lane))};
  o.who = "worker";
  o.commit_interval_ms = c.worker.commit_interval_ms;
  o.max_buffered = static_cast<std::size_t>(c.worker.max_buffered);
  o.drain_timeout_ms = c.worker.revoke_drain_timeout_ms;
  o.batch_max = c.worker.result_batch_max;
  return o;
}

}  // namespace

void LaneWorker::Sink::publish_event(const MessageOutcome& o, std::function<void()> acked,
                                     std::function<void(const Error&)> failed) {
  auto event = message_event(o);
  auto type = event["type"].get<std::string>();
  publisher_.publish(events_topic_, o.tenant_id, event.dump(), {{"sb-event-type", std::move(type)}, {"sb-message-id", o.id}},
                     std::move(acked), std::move(failed));
}

void LaneWorker::Sink::publish_json(const nlohmann::json& event, std::function<void()> acked,
                                    std::function<void(const Error&)> failed) {
  publisher_.publish(events_topic_, event["tenant"].get<std::string>(), event.dump(),
                     {{"sb-event-type", event["type"].get<std::string>()}}, std::move(acked), std::move(failed));
}

void LaneWorker::Sink::dead_letter(const ConsumedRecord& r, const std::string& reason, const std::string& detail,
                                   std::function<void()> acked) {
  // A dead letter Kafka refuses for good is logged and let go: nothing else could hold it.
  publisher_.publish(dlq_topic_, r.key, r.value, kafka::dead_letter_headers(r.source, r.offset, reason, detail),
                     acked, [acked](const Error&) { acked(); });
}

void LaneWorker::Sink::finished(const ConsumedRecord& r) {
  std::lock_guard lock(mu_);
  if (consumer_) consumer_->finished(r);
}

void LaneWorker::Sink::released(const kafka::TopicPartition& tp, uint64_t epoch, std::size_t n) {
  std::lock_guard lock(mu_);
  if (consumer_) consumer_->released(tp, epoch, n);
}

LaneWorker::LaneWorker(const Config& config, const std::string& lane, std::unique_ptr<Provider> provider)
    : config_(config),
      lane_(validate_lane(lane)),
      schemas_(config.schemas_dir),
      pool_(config.postgres),
      messages_(pool_),
      producer_(config.kafka),
      publisher_(producer_),
      sink_(publisher_, config.topic("sb.events"), config.topic("sb.dlq")),
      core_(core_options(config, lane_), loop_, schemas_, ledger_, *provider, sink_, nullptr),
      ledger_(messages_, PgCommandLedger::Options{static_cast<std::size_t>(config.worker.result_batch_max),
                                                  config.worker.result_linger_ms, RetryPolicy()}),
      lifecycle_(std::make_unique<SessionLifecycle>(config, pool_)),
      provider_(std::move(provider)),
      consumer_(config.kafka, consumer_options(config, lane_), core_) {
  sink_.attach(&consumer_);
  core_.set_session_control(lifecycle_.get());
  if (config.pacing.enabled || config.worker.session_rate_per_s > 0) {
    RedisPacer::Options po;
    po.defaults = PacingPolicy::from_config(config.pacing);
    if (config.worker.session_rate_per_s > 0)  // the older knob: a minimum gap
      po.defaults.min_gap_ms = std::max(po.defaults.min_gap_ms, (999 + config.worker.session_rate_per_s) / config.worker.session_rate_per_s);
    po.policy_cache = std::chrono::milliseconds(config.pacing.policy_cache_ms);
    pacing_store_ = std::make_unique<PacingStore>(pool_);
    pacer_ = std::make_unique<RedisPacer>(config.redis, po, [store = pacing_store_.get()](const auto& keys) { return store->load(keys); });
    core_.set_pacer(pacer_.get());
  }
  resumer_ = std::make_unique<SessionResumer>(pool_, std::chrono::milliseconds(config.pacing.resume_poll_ms), [this](const nlohmann::json& e) {
    sink_.publish_json(e, [] {}, [](const Error& err) { log::warn("session.resume_event_lost", {{"detail", err.what()}}); });
  });
}

LaneWorker::~LaneWorker() { sink_.attach(nullptr); }

void LaneWorker::run(const std::atomic<bool>& stop) {
  OpsServer ops(
      config_.worker.ops_listen, "worker.ops_listen",
      [this]() -> std::string {
        if (!producer_.reachable(2000)) return "kafka unreachable";
        if (!pool_.reachable()) return "postgresql unreachable";
        return {};
      },
      [this] {
        const std::string lane = "lane=\"" + lane_ + "\"";
        const auto& s = core_.stats();
        auto c = [&lane](const char* name, const char* help, uint64_t v) {
          return OpsServer::Metric{name, help, "counter", static_cast<double>(v), lane};
        };
        auto g = [&lane](const char* name, const char* help, double v) {
          return OpsServer::Metric{name, help, "gauge", v, lane};
        };
        const auto load = core_.load();
        std::vector<OpsServer::Metric> pacing;
        if (const auto* p = dynamic_cast<const RedisPacer*>(pacer_.get())) {
          const auto& ps = p->stats();
          pacing = {c("switchboard_pacing_reserves_total", "Send slots asked of the pacer", ps.reserves),
                    c("switchboard_pacing_waits_total", "Asks answered with a wait (a pacing limit)", ps.waits),
                    c("switchboard_pacing_unlimited_total", "Asks of sessions whose policy limits nothing (no Redis call)", ps.unlimited),
                    c("switchboard_pacing_redis_round_trips_total", "Pipelines sent to Redis by the pacer", ps.redis_round_trips),
                    c("switchboard_pacing_backoffs_total", "Throttle back-offs recorded for a session", ps.backoffs)};
        }
        pacing.push_back(c("switchboard_worker_sessions_paused_total", "Sessions paused on a ban signal", s.paused));
        auto metrics = std::vector<OpsServer::Metric>{
            c("switchboard_worker_received_total", "Commands consumed", s.received),
            c("switchboard_worker_sent_total", "Messages the provider accepted", s.sent),
            c("switchboard_worker_failed_total", "Messages that ended as message.failed", s.failed),
            c("switchboard_worker_uncertain_total", "Interrupted sends failed as uncertain (not sent again)", s.uncertain),
            c("switchboard_worker_reconciled_total", "Interrupted sends the provider confirmed", s.reconciled),
            c("switchboard_worker_replayed_total", "Replayed commands skipped (already final)", s.replayed),
            c("switchboard_worker_superseded_total", "Outcomes not published: the message had ended otherwise (another owner)", s.superseded),
            c("switchboard_worker_dead_lettered_total", "Records sent to sb.dlq", s.dead_lettered),
            c("switchboard_worker_provider_retries_total", "Provider calls retried after a retryable error", s.provider_retries),
            g("switchboard_worker_buffered", "Commands held, not yet finished", static_cast<double>(consumer_.in_hand())),
            g("switchboard_worker_in_flight", "Commands started and not yet answered by the provider",
              static_cast<double>(load.in_flight)),
            g("switchboard_worker_sessions", "Sessions with work or a pacing wait in this process",
              static_cast<double>(load.sessions))};
        metrics.insert(metrics.end(), pacing.begin(), pacing.end());
        return metrics;
      });
  log::info("worker.started", {{"lane", lane_}, {"topic", config_.topic(lane_topic_base(lane_))},
                               {"max_in_flight", std::to_string(config_.worker.max_in_flight)},
                               {"pacing", pacer_ ? "on" : "off"}});
  consumer_.run(stop);  // drains (bounded), commits and leaves the group
  // What was acked is committed; flush the rest so a clean stop leaves little to redo.
  if (!producer_.flush(5000)) log::warn("worker.unflushed", {{"lane", lane_}, {"pending", std::to_string(publisher_.pending())}});
  const auto& s = core_.stats();
  log::info("worker.stopped", {{"lane", lane_}, {"received", std::to_string(s.received)}, {"sent", std::to_string(s.sent)},
                               {"failed", std::to_string(s.failed)}, {"uncertain", std::to_string(s.uncertain)},
                               {"replayed", std::to_string(s.replayed)}, {"dead_lettered", std::to_string(s.dead_lettered)}});
}

}  // namespace sb
