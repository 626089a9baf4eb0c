#pragma once
// Global backpressure at intake: a thread reads the lane groups' consumer lag every
// backpressure.check_interval_ms (core/lag_probe.hpp: committed offsets vs high watermarks)
// and caches it; a send asks `overloaded()` — an atomic load, nothing on the request path waits
// for Kafka. While any lane's lag is above backpressure.max_lag, sends to that lane get 503 + Retry-After so
// producers slow down before the system falls behind further. The same readings feed /metrics
// (sb_consumer_lag per group and partition).
//
// The same turn also reads the dead-letter topics' depth (sb_dlq_depth{topic}: high − low
// watermark, as `switchboard status` counts it, through the same code). Intake exports it
// because it already runs this timer with a Kafka handle that joins no group, and it sees both
// dead-letter topics; a dispatcher only knows its own, a worker only the commands'. Cost per
// turn: one metadata and two ListOffsets requests per leader for the two topics (skipped while
// the lag reading fails: Kafka down must not make each turn three times as long).
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/lag_probe.hpp"

namespace sb {

class LaneBackpressure {
 public:
  explicit LaneBackpressure(const Config& config);  // starts the thread
  ~LaneBackpressure();

  // Whether this lane's lag is over backpressure.max_lag (false when backpressure is off).
  bool overloaded(const std::string& lane) const;
  int64_t lag_of(const std::string& lane) const;
  // Prometheus text: sb_consumer_lag{group,partition}, sb_consumer_lag_read_errors_total,
  // sb_intake_backpressure{lane}, sb_dlq_depth{topic}, sb_dlq_depth_read_errors_total.
  std::string metrics() const;

 private:
  void loop();

  const Config& config_;
  LagProbe probe_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GroupLag> last_;
  std::map<std::string, int64_t> dlq_depth_;  // topic → records (the last good reading)
  uint64_t dlq_read_errors_ = 0;
  std::set<std::string> overloaded_;  // lanes over the threshold
  uint64_t read_errors_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last
};

}  // namespace sb
