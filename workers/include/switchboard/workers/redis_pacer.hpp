#pragma once
// Pacer on Redis: one GCRA slot per send, per session, in one atomic script (the same budget
// for every replica of every lane). Requests are served in order on the pacer's own thread,
// so the session engine never waits on Redis itself.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/workers/lane_core.hpp"

namespace sb {

class RedisPacer : public Pacer {
 public:
  // `per_second` sends per session (> 0).
  RedisPacer(const RedisConfig& config, double per_second);
  ~RedisPacer() override;  // pending reservations are dropped without a callback
  void reserve(const std::string& tenant, const std::string& session, Done done) override;

 private:
  struct Request {
    std::string key;
    Done done;
  };
  void loop();

  RedisConfig config_;
  std::string interval_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last
};

}  // namespace sb
