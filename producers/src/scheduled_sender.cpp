#include "switchboard/producers/scheduled_sender.hpp"

#include <chrono>
#include <future>

#include "switchboard/core/log.hpp"

namespace sb {

ScheduledSender::ScheduledSender(const Config& config, pg::Pool& pool, CommandPublisher& publisher)
    : config_(config), store_(pool), publisher_(publisher), thread_([this] { loop(); }) {}

ScheduledSender::~ScheduledSender() { stop(); }

void ScheduledSender::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> ScheduledSender::publish(const std::vector<SendCommand>& commands) {
  std::vector<std::future<kafka::DeliveryResult>> acks;
  acks.reserve(commands.size());
  std::vector<std::string> acked;
  for (const auto& c : commands) {
    try {
      acks.push_back(publisher_.publish(c));
    } catch (const Error& e) {
      acks.emplace_back();  // not queued locally: stays scheduled for the next turn
      ++publish_failures_;
      log::warn("scheduler.publish_failed", {{"tenant", c.tenant}, {"message_id", c.id}, {"detail", e.what()}});
    }
  }
  // librdkafka fails a record after message.timeout.ms (the publish timeout); the margin covers
  // callback latency, so this waits at most about that long in all.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.intake.publish_timeout_ms + 2000);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    if (!acks[i].valid()) continue;
    if (acks[i].wait_until(deadline) != std::future_status::ready) {
      ++publish_failures_;
      continue;
    }
    const auto r = acks[i].get();
    if (r.ok()) {
      acked.push_back(commands[i].id);
      log::debug("scheduler.released", {{"tenant", commands[i].tenant}, {"session", commands[i].session},
                                         {"message_id", commands[i].id}, {"priority", commands[i].priority}});
    } else {
      // Possibly persisted or not: either way the row stays scheduled and is published again
      // (same id, deduped by the lane) next turn.
      ++publish_failures_;
      log::warn("scheduler.publish_failed", {{"tenant", commands[i].tenant}, {"message_id", commands[i].id}, {"detail", r.error}});
    }
  }
  return acked;
}

void ScheduledSender::loop() {
  const auto poll = std::chrono::milliseconds(config_.scheduler.poll_interval_ms);
  const int tx_idle_ms = config_.intake.publish_timeout_ms + 10000;
  log::info("scheduler.started", {{"poll_interval_ms", std::to_string(config_.scheduler.poll_interval_ms)},
                                  {"batch_max", std::to_string(config_.scheduler.batch_max)}});
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    std::size_t claimed = 0;
    try {
      std::size_t acked = 0;
      claimed = store_.release_due(config_.scheduler.batch_max, tx_idle_ms, [&](const std::vector<SendCommand>& cmds) {
        auto ids = publish(cmds);
        acked = ids.size();
        return ids;
      });
      released_ += acked;
      if (claimed > 0) log::info("scheduler.batch_released", {{"claimed", std::to_string(claimed)}, {"released", std::to_string(acked)}});
      if (acked < claimed) claimed = 0;  // Kafka is struggling: wait a poll interval before trying again
    } catch (const std::exception& e) {
      claimed = 0;
      // Once, then every 100th: PostgreSQL being down would otherwise log five lines a second.
      if (++turn_failures_ % 100 == 1) log::warn("scheduler.turn_failed", {{"failures", std::to_string(turn_failures_.load())}, {"detail", e.what()}});
    }
    if (claimed >= static_cast<std::size_t>(config_.scheduler.batch_max)) continue;  // more are due
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, poll, [&] { return stopping_; });
  }
}

}  // namespace sb
