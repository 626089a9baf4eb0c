#include "switchboard/workers/lane_worker.hpp"

#include <algorithm>
#include <chrono>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb {
namespace {
using Steady = std::chrono::steady_clock;

std::string str(int64_t v) { return std::to_string(v); }

std::string validate_lane(const std::string& lane) {
  for (const char* l : kLanes)
    if (lane == l) return lane;
  throw ConfigError("unknown lane '" + lane + "': allowed values are high, default, low");
}
}  // namespace

LaneWorker::LaneWorker(const Config& config, const std::string& lane, Provider& provider)
    : config_(config),
      lane_(validate_lane(lane)),
      topic_(config.topic(lane_topic_base(lane))),
      group_(config.topic("sb-workers-" + lane)),
      dlq_topic_(config.topic("sb.dlq")),
      provider_(provider),
      schemas_(config.schemas_dir),
      pool_(config.postgres),
      messages_(pool_),
      tenants_(pool_),
      limiter_(config.redis, config.worker.session_rate_per_s),
      producer_(config.kafka) {
  results_ = std::make_unique<ResultPublisher>(config_, messages_, producer_,
                                               [this](const kafka::TopicPartition& tp, int64_t off) { finished(tp, off); });
}

LaneWorker::~LaneWorker() {
  scheduler_.stop();
  for (auto& t : executors_)
    if (t.joinable()) t.join();
}

void LaneWorker::run(const std::atomic<bool>& stop) {
  consumer_ = std::make_unique<kafka::Consumer>(config_.kafka, group_, this);
  consumer_->subscribe({topic_});
  for (int i = 0; i < config_.worker.max_in_flight; ++i) executors_.emplace_back([this] { executor_loop(); });
  OpsServer ops(
      config_.worker.ops_listen, "worker.ops_listen",
      [this]() -> std::string {
        if (!producer_.reachable(2000)) return "kafka unreachable";
        if (!pool_.reachable()) return "postgresql unreachable";
        return {};
      },
      [this] {
        const std::string lane = "lane=\"" + lane_ + "\"";
        auto c = [&lane](const char* name, const char* help, uint64_t v) {
          return OpsServer::Metric{name, help, "counter", static_cast<double>(v), lane};
        };
        return std::vector<OpsServer::Metric>{
            c("switchboard_worker_received_total", "Commands consumed", stats_.received),
            c("switchboard_worker_sent_total", "Messages the provider accepted", stats_.sent),
            c("switchboard_worker_failed_total", "Messages that ended as message.failed", stats_.failed),
            c("switchboard_worker_replayed_total", "Replayed commands skipped (already final)", stats_.replayed),
            c("switchboard_worker_dead_lettered_total", "Records sent to sb.dlq", stats_.dead_lettered),
            {"switchboard_worker_buffered", "Commands held, not yet finished", "gauge",
             static_cast<double>(scheduler_.buffered()), lane}};
      });
  log::info("worker.started", {{"lane", lane_}, {"topic", topic_}, {"group", group_},
                               {"max_in_flight", std::to_string(config_.worker.max_in_flight)}});

  auto last_commit = Steady::now();
  auto last_stats = Steady::now();
  while (!stop.load()) {
    if (auto msg = consumer_->poll(100)) handle_record(msg.get());
    apply_backpressure();
    if (Steady::now() - last_commit >= std::chrono::milliseconds(config_.worker.commit_interval_ms)) {
      commit_finished();
      last_commit = Steady::now();
    }
    if (Steady::now() - last_stats >= std::chrono::seconds(30)) {
      log::info("worker.stats", {{"lane", lane_}, {"received", str(stats_.received)}, {"sent", str(stats_.sent)},
                                 {"failed", str(stats_.failed)}, {"dead_lettered", str(stats_.dead_lettered)},
                                 {"buffered", str(scheduler_.buffered())}});
      last_stats = Steady::now();
    }
  }

  // Graceful stop: take nothing new, let started work finish (bounded), commit, leave the group.
  log::info("worker.stopping", {{"lane", lane_}, {"buffered", str(scheduler_.buffered())}});
  const auto deadline = Steady::now() + std::chrono::milliseconds(config_.worker.revoke_drain_timeout_ms);
  abandon_queued([](const kafka::TopicPartition&) { return true; });
  while (scheduler_.buffered() > 0 && Steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  scheduler_.stop();
  for (auto& t : executors_) t.join();
  executors_.clear();
  results_->stop();
  commit_finished();
  consumer_->close();  // revoke callback: nothing left to drain
  log::info("worker.stopped", {{"lane", lane_}, {"received", str(stats_.received)}, {"sent", str(stats_.sent)},
                               {"failed", str(stats_.failed)}, {"replayed", str(stats_.replayed)},
                               {"dead_lettered", str(stats_.dead_lettered)}});
}

void LaneWorker::handle_record(const rd_kafka_message_t* msg) {
  const kafka::TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
  const int64_t offset = msg->offset;
  ++stats_.received;
  progress_.track(tp, offset);
  const std::string key(kafka::key_of(msg));
  const std::string value(kafka::value_of(msg));
  try {
    Job job{tp, offset, key, value, parse_command(key, value, schemas_)};
    const auto session_key = job.command.tenant + "/" + job.command.session;
    scheduler_.enqueue(session_key, std::move(job));
  } catch (const InvalidInput& e) {
    // A bad record must not stop the partition: park it in the DLQ with the reason.
    dead_letter(tp, offset, key, value, "invalid_command", e.what());
  }
}

void LaneWorker::executor_loop() {
  while (auto next = scheduler_.next()) {
    try {
      execute(next->second);
    } catch (const std::exception& e) {
      // Left unfinished: its offset is not committed and the command is redone after a restart.
      log::error("worker.job_crashed", {{"message_id", next->second.command.id}, {"detail", e.what()}});
    }
    scheduler_.finish(next->first);
  }
}

bool LaneWorker::owns(const kafka::TopicPartition& tp) {
  {
    std::lock_guard lock(revoking_mu_);
    if (revoking_.count(tp)) return false;
  }
  return progress_.owns(tp);
}

bool LaneWorker::session_known(const std::string& tenant_id, const std::string& session) {
  const auto key = tenant_id + "/" + session;
  {
    std::lock_guard lock(sessions_mu_);
    if (known_sessions_.count(key)) return true;
  }
  if (!tenants_.session_exists(tenant_id, session)) return false;
  std::lock_guard lock(sessions_mu_);
  known_sessions_.insert(key);
  return true;
}

void LaneWorker::execute(const Job& job) {
  const auto& cmd = job.command;
  for (int attempt = 1;; ++attempt) {
    if (!owns(job.source)) return abandoned(job.source);  // revoked: the new owner redoes it
    try {
      if (!session_known(cmd.tenant, cmd.session)) {
        dead_letter(job.source, job.offset, job.key, job.raw, "unknown_session",
                    "tenant '" + cmd.tenant + "' has no session '" + cmd.session + "'");
        return;
      }
      // Dedupe by message id: a replayed command whose outcome is recorded is not sent again.
      const auto known = messages_.lookup({cmd.id});
      if (auto it = known.find(cmd.id); it != known.end() && it->second.status != "queued") {
        ++stats_.replayed;
        if (it->second.event_published) {
          finished(job.source, job.offset);
        } else {
          MessageOutcome o{cmd.id, cmd.tenant, cmd.session, cmd.to, cmd.text, cmd.priority, it->second.status,
                           it->second.provider_message_id, it->second.error, it->second.updated_at};
          results_->submit({std::move(o), true, job.source, job.offset});
        }
        log::info("worker.replay_skipped", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                            {"status", it->second.status}});
        return;
      }
      if (!limiter_.acquire(cmd.tenant, cmd.session))
        throw Unavailable("session rate limit wait exceeded");
      auto outcome = send_with_retries(cmd);
      (outcome.status == "sent" ? stats_.sent : stats_.failed)++;
      results_->submit({std::move(outcome), false, job.source, job.offset});
      return;
    } catch (const Error& e) {
      if (!e.retryable()) throw;
      log::warn("worker.dependency_unavailable", {{"tenant", cmd.tenant}, {"message_id", cmd.id},
                                                  {"attempt", std::to_string(attempt)}, {"detail", e.what()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 100 * attempt)));
    }
  }
}

MessageOutcome LaneWorker::send_with_retries(const SendCommand& cmd) {
  MessageOutcome o{cmd.id, cmd.tenant, cmd.session, cmd.to, cmd.text, cmd.priority, "failed", {}, {}, {}};
  const SendRequest req{cmd.tenant, cmd.session, cmd.id, cmd.to, cmd.text};
  SendResult r;
  for (int attempt = 1; attempt <= config_.worker.provider_attempts; ++attempt) {
    r = provider_.send(req);
    if (r.status != SendResult::Status::RetryableError) break;
    log::warn("worker.provider_retry", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                        {"attempt", std::to_string(attempt)}, {"error", r.error}});
    if (attempt < config_.worker.provider_attempts)
      std::this_thread::sleep_for(std::chrono::milliseconds(config_.worker.provider_backoff_ms << (attempt - 1)));
  }
  o.at = now_rfc3339();
  if (r.status == SendResult::Status::Sent) {
    o.status = "sent";
    o.provider_message_id = r.provider_message_id;
    log::debug("message.sent", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                {"provider_message_id", r.provider_message_id}});
  } else {
    o.error = r.status == SendResult::Status::Rejected
                  ? "provider rejected: " + r.error
                  : "provider failed after " + std::to_string(config_.worker.provider_attempts) + " attempts: " + r.error;
    log::warn("message.failed", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id}, {"error", *o.error}});
  }
  return o;
}

void LaneWorker::dead_letter(const kafka::TopicPartition& source, int64_t offset, const std::string& key,
                             const std::string& value, const std::string& reason, const std::string& detail) {
  ++stats_.dead_lettered;
  log::warn("worker.dead_lettered", {{"topic", source.topic}, {"partition", std::to_string(source.partition)},
                                     {"offset", str(offset)}, {"key", key}, {"reason", reason}, {"detail", detail}});
  publish_until_acked(producer_, dlq_topic_, key, value,
                      {{"sb-dlq-reason", reason},
                       {"sb-dlq-error", detail},
                       {"sb-source-topic", source.topic},
                       {"sb-source-partition", std::to_string(source.partition)},
                       {"sb-source-offset", str(offset)},
                       {"sb-dead-lettered-at", now_rfc3339()}},
                      [this, source, offset] { finished(source, offset); });
}

void LaneWorker::finished(const kafka::TopicPartition& source, int64_t offset) {
  progress_.finished(source, offset);  // revoked meanwhile: ignored, the new owner redoes it (deduped)
}

void LaneWorker::abandoned(const kafka::TopicPartition& source) {
  progress_.released(source);  // a revoke may be waiting for this partition's started work
}

void LaneWorker::commit_finished(const std::vector<kafka::TopicPartition>* only) {
  progress_.commit(*consumer_, only, "worker");
}

void LaneWorker::apply_backpressure() {
  const auto buffered = scheduler_.buffered();
  const auto change = backpressure_.update(buffered, static_cast<std::size_t>(config_.worker.max_buffered));
  if (!change) return;
  const auto parts = progress_.owned();
  if (*change) consumer_->pause(parts);
  else consumer_->resume(parts);
  log::info(*change ? "worker.paused" : "worker.resumed", {{"lane", lane_}, {"buffered", str(buffered)}});
}

std::size_t LaneWorker::abandon_queued(const std::function<bool(const kafka::TopicPartition&)>& which) {
  std::map<kafka::TopicPartition, std::size_t> dropped_by;
  const auto dropped = scheduler_.drop_queued([&](const Job& j) {
    if (!which(j.source)) return false;
    ++dropped_by[j.source];
    return true;
  });
  for (const auto& [tp, n] : dropped_by) progress_.released(tp, n);
  return dropped;
}

void LaneWorker::on_assigned(const std::vector<kafka::TopicPartition>& parts) {
  stats_.assigned += parts.size();
  progress_.assign(parts);
  std::string names;
  {
    std::lock_guard lock(revoking_mu_);
    for (const auto& tp : parts) {
      revoking_.erase(tp);
      names += (names.empty() ? "" : ",") + std::to_string(tp.partition);
    }
  }
  if (backpressure_.paused()) consumer_->pause(parts);
  log::info("worker.assigned", {{"lane", lane_}, {"partitions", names}});
}

void LaneWorker::on_revoked(const std::vector<kafka::TopicPartition>& parts, bool lost) {
  stats_.revoked += parts.size();
  {
    std::lock_guard lock(revoking_mu_);
    for (const auto& tp : parts) revoking_.insert(tp);
  }
  // Queued, not started: abandon (uncommitted, so the next owner gets them).
  const auto dropped = abandon_queued([&](const kafka::TopicPartition& tp) {
    return std::find(parts.begin(), parts.end(), tp) != parts.end();
  });
  // Started work: give it a bounded time to finish so its offsets can be committed.
  if (!lost) {
    progress_.wait_idle(parts, Steady::now() + std::chrono::milliseconds(config_.worker.revoke_drain_timeout_ms));
    commit_finished(&parts);
  }
  stats_.dropped_on_revoke += dropped;
  const auto unfinished = progress_.remove(parts);
  stats_.abandoned_on_revoke += unfinished;
  std::string names;
  for (const auto& tp : parts) names += (names.empty() ? "" : ",") + std::to_string(tp.partition);
  log::info("worker.revoked", {{"lane", lane_}, {"partitions", names}, {"lost", lost ? "true" : "false"},
                               {"dropped_queued", str(dropped)}, {"unfinished", str(unfinished)}});
}

}  // namespace sb
