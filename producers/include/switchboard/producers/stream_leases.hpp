#pragma once
// StreamLeases: the per-tenant limit on open event streams (stream.max_connections_per_tenant),
// held across every intake replica without sticky sessions.
//
// Each open stream holds a lease in Redis: a member of the tenant's sorted set
// sb:stream-leases:<tenant> ("<replica>/<n>", scored with its expiry in Redis's own clock, so the
// replicas' clocks never matter). acquire() is one Lua script, atomic in Redis: it drops the
// expired leases, counts the others and adds this one only under the limit. A thread refreshes
// this process's leases every stream.lease_ttl_ms / 3 and removes the closed ones (release() is
// called from IO threads: it never waits on Redis). A replica that dies stops refreshing: its
// leases expire after stream.lease_ttl_ms and free their places.
//
// Redis unreachable: acquire() says so (cluster == false) and the caller falls back to the
// per-process limit, logged once until Redis answers again; the refresher then writes the
// leases of the streams opened meanwhile, so the count is true again.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "switchboard/core/config.hpp"

namespace sb {

class RedisClient;

class StreamLeases {
 public:
  struct Grant {
    bool allowed = true;   // false: the tenant has `open` leases already, at or over the limit
    bool cluster = false;  // true: Redis decided; false: Redis unreachable, only the caller's local check holds
    long long open = 0;    // the tenant's live leases across replicas (with this one when allowed)
    std::string lease;     // this stream's lease id (also when Redis was unreachable): release() it
  };

  explicit StreamLeases(const Config& config);
  ~StreamLeases();  // stops the refresher; this process's leases are removed (best effort)
  StreamLeases(const StreamLeases&) = delete;
  StreamLeases& operator=(const StreamLeases&) = delete;

  // One Redis round trip (bounded by redis.timeout_ms; skipped for a second after a failure):
  // call it off the IO threads.
  Grant acquire(const std::string& tenant, int limit);
  // Never blocks: the lease stops being refreshed now and is removed from Redis by the refresher.
  void release(const std::string& tenant, const std::string& lease);

  uint64_t fallbacks() const;  // admissions decided without Redis
  const std::string& replica() const { return replica_; }

 private:
  std::unique_ptr<RedisClient> borrow();
  void give_back(std::unique_ptr<RedisClient> c);
  void run();
  bool refresh(RedisClient& redis);
  void note_redis_down(const std::string& why);
  void note_redis_up();

  const RedisConfig redis_config_;
  const int ttl_ms_;
  const std::string replica_;  // host:pid:random — unique per process, readable in Redis

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::string> local_;  // lease → tenant: what this process holds
  std::deque<std::pair<std::string, std::string>> to_remove_;  // (tenant, lease) closed, for the refresher
  std::vector<std::unique_ptr<RedisClient>> idle_clients_;  // one per concurrent acquire (RedisClient: one thread at a time)
  uint64_t next_id_ = 0;
  uint64_t fallbacks_ = 0;
  bool redis_down_ = false;  // logged once per outage
  std::chrono::steady_clock::time_point skip_redis_until_{};
  bool stopping_ = false;
  std::thread thread_;  // last: it uses everything above
};

}  // namespace sb
