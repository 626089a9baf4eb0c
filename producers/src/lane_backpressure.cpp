#include "switchboard/producers/lane_backpressure.hpp"

#include <chrono>
#include <map>

#include "switchboard/core/command.hpp"

#include "switchboard/core/log.hpp"

namespace sb {

LaneBackpressure::LaneBackpressure(const Config& config) : config_(config), probe_(config, false), thread_([this] { loop(); }) {}

LaneBackpressure::~LaneBackpressure() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool LaneBackpressure::overloaded(const std::string& lane) const {
  std::lock_guard lock(mu_);
  return overloaded_.count(lane) > 0;
}

int64_t LaneBackpressure::lag_of(const std::string& lane) const {
  std::lock_guard lock(mu_);
  for (const auto& g : last_)
    if (g.lane == lane) return g.total();
  return 0;
}

std::string LaneBackpressure::metrics() const {
  std::lock_guard lock(mu_);
  std::string out = "# HELP sb_consumer_lag Records on a partition not yet committed by its consumer group (high watermark - committed).\n"
                    "# TYPE sb_consumer_lag gauge\n";
  for (const auto& g : last_)
    for (const auto& [p, lag] : g.partitions)
      out += "sb_consumer_lag{group=\"" + g.group + "\",topic=\"" + g.topic + "\",partition=\"" + std::to_string(p) + "\"} " +
             std::to_string(lag) + "\n";
  out += "# HELP sb_consumer_lag_read_errors_total Lag readings that failed (Kafka unreachable).\n"
         "# TYPE sb_consumer_lag_read_errors_total counter\nsb_consumer_lag_read_errors_total " + std::to_string(read_errors_) + "\n";
  out += "# HELP sb_intake_backpressure Whether intake refuses a lane's sends because it lags (1) or not (0).\n"
         "# TYPE sb_intake_backpressure gauge\n";
  for (const char* lane : kLanes)
    out += "sb_intake_backpressure{lane=\"" + std::string(lane) + "\"} " + (overloaded_.count(lane) ? "1" : "0") + "\n";
  out += "# HELP sb_dlq_depth Records on a dead-letter topic (high - low watermark summed over its partitions); the same from every intake replica.\n"
         "# TYPE sb_dlq_depth gauge\n";
  for (const auto& [topic, depth] : dlq_depth_) out += "sb_dlq_depth{topic=\"" + topic + "\"} " + std::to_string(depth) + "\n";
  out += "# HELP sb_dlq_depth_read_errors_total Dead-letter depth readings that failed (Kafka unreachable, topic missing).\n"
         "# TYPE sb_dlq_depth_read_errors_total counter\nsb_dlq_depth_read_errors_total " + std::to_string(dlq_read_errors_) + "\n";
  return out;
}

void LaneBackpressure::loop() {
  const auto every = std::chrono::milliseconds(config_.backpressure.check_interval_ms);
  const int timeout_ms = std::max(500, config_.backpressure.check_interval_ms);
  for (;;) {
    auto lags = probe_.read(timeout_ms);
    std::set<std::string> over;
    bool failed = false;
    for (const auto& g : lags) {
      failed = failed || !g.error.empty();
      if (config_.backpressure.max_lag > 0 && !g.lane.empty() && g.total() > config_.backpressure.max_lag) over.insert(g.lane);
    }
    // Kafka answered the lag reading: read the dead-letter depth too (not while it is down, so a
    // turn, and intake's stop that waits for it, stays within the lag reading's timeouts).
    std::vector<TopicStatus> dead_letters;
    if (!failed) dead_letters = probe_.dead_letters(timeout_ms);
    std::set<std::string> was;
    std::map<std::string, int64_t> lane_lag;
    for (const auto& g : lags) lane_lag[g.lane] = g.total();
    {
      std::lock_guard lock(mu_);
      was = overloaded_;
      for (const auto& t : dead_letters) {
        if (t.error.empty()) dlq_depth_[t.name] = t.records();
        else ++dlq_read_errors_;  // the last good depth stays
      }
      // A failed reading keeps the last good one (no false alarm, no false all-clear).
      if (failed) {
        ++read_errors_;
      } else {
        last_ = std::move(lags);
        overloaded_ = over;
      }
    }
    if (!failed)
      for (const char* lane : kLanes) {
        const bool now_over = over.count(lane), was_over = was.count(lane);
        if (now_over == was_over) continue;
        const auto lag = std::to_string(lane_lag[lane]), max = std::to_string(config_.backpressure.max_lag);
        if (now_over) log::warn("intake.backpressure_on", {{"lane", lane}, {"lag", lag}, {"max_lag", max}});
        else log::info("intake.backpressure_off", {{"lane", lane}, {"lag", lag}, {"max_lag", max}});
      }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, every, [&] { return stopping_; })) return;
  }
}

}  // namespace sb
