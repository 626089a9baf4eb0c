#include "switchboard/workers/redis_pacer.hpp"

#include <cmath>

#include "switchboard/core/errors.hpp"

namespace sb {
namespace {
// GCRA with a burst of one: the theoretical arrival time (TAT) moves on by one interval per
// granted send; a request earlier than TAT is told how long to wait. Redis' own clock, so
// replicas' clocks don't matter.
const char* kScript = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then return tat - now end
redis.call('SET', KEYS[1], now + interval, 'PX', math.ceil(interval) + 1000)
return 0
)LUA";
}  // namespace

RedisPacer::RedisPacer(const RedisConfig& config, double per_second)
    : config_(config),
      interval_ms_(std::to_string(static_cast<long long>(std::ceil(1000.0 / per_second)))),
      thread_([this] { loop(); }) {}

RedisPacer::~RedisPacer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RedisPacer::reserve(const std::string& tenant, const std::string& session, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({"sb:pace:" + tenant + ":" + session, std::move(done)});
  }
  cv_.notify_one();
}

void RedisPacer::loop() {
  RedisClient redis(config_);
  for (;;) {
    std::deque<Request> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      batch.swap(queue_);
    }
    for (auto& r : batch) {
      try {
        auto reply = redis.command({"EVAL", kScript, "1", r.key, interval_ms_});
        if (reply->type != REDIS_REPLY_INTEGER)
          throw Error(ErrorKind::Internal, "pacing script returned a non-integer reply");
        r.done(std::chrono::milliseconds(reply->integer), nullptr);
      } catch (...) {
        r.done(std::chrono::milliseconds(0), std::current_exception());
      }
    }
  }
}

}  // namespace sb
