#pragma once
// Global backpressure at intake: a thread reads the lane groups' consumer lag every
// backpressure.check_interval_ms (core/lag_probe.hpp: committed offsets vs high watermarks)
// and caches it; a send asks `overloaded()` — an atomic load, nothing on the request path waits
// for Kafka. While any lane's lag is above backpressure.max_lag, sends to that lane get 503 + Retry-After so
// producers slow down before the system falls behind further. The same readings feed /metrics
// (sb_consumer_lag per group and partition).
#include <atomic>
#include <condition_variable>
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
  // Prometheus text: sb_consumer_lag{group,partition}, sb_consumer_lag_read_errors_total.
  std::string metrics() const;

 private:
  void loop();

  const Config& config_;
  LagProbe probe_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GroupLag> last_;
  std::set<std::string> overloaded_;  // lanes over the threshold
  uint64_t read_errors_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last
};

}  // namespace sb
