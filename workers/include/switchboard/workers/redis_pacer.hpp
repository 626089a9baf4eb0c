#pragma once
// Pacer on Redis: every limit of a session's pacing policy (pacing_policy.hpp) checked and, when
// all allow it, taken in one atomic Lua script — one round trip per paced send, the same budget
// for every replica of every lane, on Redis' clock (replicas' clocks don't matter). Requests are
// served in batches on the pacer's own thread (one pipeline per batch), so the session engine
// never waits on Redis or PostgreSQL itself; a session's policy (its tenant's and its own
// overrides) is read from PostgreSQL in one query per batch of sessions not seen for
// pacing.policy_cache_ms. A session whose policy limits nothing costs no Redis call.
//
// Keys (one hash tag per session, so a Redis Cluster keeps them on one slot):
//   sb:pace:{tenant/session}:hold   back-off after a throttle signal (until, ms)
//   …:gap   next send allowed (ms)        …:min, …:hour   the newest N send times (lists)
//   …:warm  {d: warm-up day, n: sends that day}   …:num  Cloud API number GCRA (TAT, ms)
//   …:pair:<to>  next send to that recipient allowed (ms)
// Every key expires once it can no longer hold anything back.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/pacing_policy.hpp"
#include "switchboard/core/pacing_store.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/workers/lane_core.hpp"

namespace sb {

// The pacing script's calling convention, on its own so its math is tested against a real Redis.
struct PaceRequest {
  std::string tenant, session, to;
  PacingPolicy policy;
  bool cloud_api = false;                   // number_per_s and pair_gap_ms apply
  std::optional<int64_t> first_working_ms;  // warm-up day 0 starts here (none: now)
  int jitter_ms = 0;                        // drawn by the caller in 0..policy.jitter_ms
};
struct PaceVerdict {
  std::chrono::milliseconds wait{0};  // 0: the send slot is taken
  std::string limit;                  // which limit asked for the wait (min_gap, per_minute, …)
};
struct PacingScript {
  static const std::string& reserve_source();
  static const std::string& backoff_source();
  static const std::string& reserve_sha();
  static const std::string& backoff_sha();
  static std::vector<std::string> reserve_command(const PaceRequest& r);  // EVALSHA …
  static std::vector<std::string> backoff_command(const std::string& tenant, const std::string& session,
                                                  std::chrono::milliseconds wait);
  // Throws Error(Internal) for an unexpected reply.
  static PaceVerdict verdict(const redisReply& reply);
  static std::string key_prefix(const std::string& tenant, const std::string& session);
};

struct PacerStats {
  std::atomic<uint64_t> reserves{0}, waits{0}, unlimited{0}, redis_round_trips{0}, policy_loads{0}, backoffs{0};
};

class RedisPacer : public Pacer {
 public:
  using Load = std::function<std::map<PacingStore::Key, SessionPacing>(const std::vector<PacingStore::Key>&)>;
  struct Options {
    PacingPolicy defaults;
    std::chrono::milliseconds policy_cache{5000};
  };
  // `load` reads sessions' policies (PacingStore::load); empty: every session gets the defaults
  // as a simulator session.
  RedisPacer(const RedisConfig& config, Options options, Load load = {});
  ~RedisPacer() override;  // pending reservations are dropped without a callback
  void reserve(const std::string& tenant, const std::string& session, const std::string& to, Done done) override;
  void backoff(const std::string& tenant, const std::string& session, std::chrono::milliseconds wait) override;
  const PacerStats& stats() const { return stats_; }

 private:
  struct Request {
    std::string tenant, session, to;
    Done done;                                     // empty: a back-off
    std::chrono::milliseconds backoff{0};
  };
  struct Cached {
    SessionPacing pacing;
    PacingPolicy policy;
    std::chrono::steady_clock::time_point loaded;
  };
  void loop();
  void serve(std::deque<Request>& batch, RedisClient& redis);
  const Cached* policy_of(const PacingStore::Key& key);

  RedisConfig config_;
  Options options_;
  Load load_;
  PacerStats stats_;
  std::mt19937_64 rng_{std::random_device{}()};       // pacer thread only
  std::map<PacingStore::Key, Cached> cache_;           // pacer thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last
};

}  // namespace sb
