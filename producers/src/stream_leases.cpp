#include "switchboard/producers/stream_leases.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <map>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/redis.hpp"

namespace sb {
namespace {

// KEYS[1]: the tenant's lease set. ARGV: lease ttl (ms), limit, the new lease. Returns
// {1 allowed / 0 refused, live leases (with the new one when allowed)}. Expired leases (score,
// their expiry in Redis's clock, reached) go first, so a dead replica's places come back.
const char* kAcquireLeaseScript = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then return {0, n} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, n + 1}
)LUA";

// KEYS[1]: the tenant's lease set. ARGV: ttl (ms), then this process's leases of the tenant:
// each expires ttl from now (added again if Redis lost it, e.g. written while Redis was down).
const char* kRefreshLeasesScript = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
)LUA";

std::string lease_key(const std::string& tenant) { return "sb:stream-leases:" + tenant; }

std::string this_replica() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const auto id = new_uuid_v7();
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + id.substr(id.size() - 8);  // the uuid's random tail
}

constexpr std::size_t kLeasesPerRefresh = 100;  // members per EVAL: a short script run

}  // namespace

StreamLeases::StreamLeases(const Config& config)
    : redis_config_(config.redis), ttl_ms_(config.stream.lease_ttl_ms), replica_(this_replica()) {
  idle_clients_.push_back(std::make_unique<RedisClient>(redis_config_));  // a malformed redis.url: ConfigError now
  thread_ = std::thread([this] { run(); });
}

StreamLeases::~StreamLeases() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::unique_ptr<RedisClient> StreamLeases::borrow() {
  std::lock_guard lock(mu_);
  if (idle_clients_.empty()) return std::make_unique<RedisClient>(redis_config_);
  auto c = std::move(idle_clients_.back());
  idle_clients_.pop_back();
  return c;
}

void StreamLeases::give_back(std::unique_ptr<RedisClient> c) {
  std::lock_guard lock(mu_);
  idle_clients_.push_back(std::move(c));
}

void StreamLeases::note_redis_down(const std::string& why) {
  std::lock_guard lock(mu_);
  // A Redis that hangs must not make every admission wait its timeout: a second without it.
  skip_redis_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  if (redis_down_) return;
  redis_down_ = true;
  log::warn("stream.leases_unavailable",
            {{"detail", why}, {"fallback", "stream.max_connections_per_tenant holds per intake process until Redis answers"}});
}

void StreamLeases::note_redis_up() {
  std::lock_guard lock(mu_);
  if (!redis_down_) return;
  redis_down_ = false;
  log::info("stream.leases_available", {{"detail", "the per-tenant stream limit holds across replicas again"}});
}

StreamLeases::Grant StreamLeases::acquire(const std::string& tenant, int limit) {
  Grant g;
  bool skip = false;
  {
    std::lock_guard lock(mu_);
    g.lease = replica_ + "/" + std::to_string(++next_id_);
    skip = std::chrono::steady_clock::now() < skip_redis_until_;
  }
  if (!skip) {
    auto redis = borrow();
    try {
      auto reply = redis->command({"EVAL", kAcquireLeaseScript, "1", lease_key(tenant), std::to_string(ttl_ms_),
                                   std::to_string(limit), g.lease});
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        throw Error(ErrorKind::Internal, "stream lease script: unexpected reply");
      g.allowed = reply->element[0]->integer == 1;
      g.open = reply->element[1]->integer;
      g.cluster = true;
      note_redis_up();
    } catch (const std::exception& e) {
      note_redis_down(std::string("acquiring a stream lease for tenant ") + tenant + ": " + e.what());
    }
    give_back(std::move(redis));
  }
  std::lock_guard lock(mu_);
  if (!g.cluster) ++fallbacks_;
  if (g.allowed) local_[g.lease] = tenant;
  return g;
}

void StreamLeases::release(const std::string& tenant, const std::string& lease) {
  std::lock_guard lock(mu_);
  if (local_.erase(lease) == 0) return;
  to_remove_.emplace_back(tenant, lease);
  cv_.notify_one();
}

uint64_t StreamLeases::fallbacks() const {
  std::lock_guard lock(mu_);
  return fallbacks_;
}

// Every lease of this process, ttl from now: one script run per tenant (per 100 leases).
// False when there was none (Redis not asked).
bool StreamLeases::refresh(RedisClient& redis) {
  std::map<std::string, std::vector<std::string>> by_tenant;
  {
    std::lock_guard lock(mu_);
    for (const auto& [lease, tenant] : local_) by_tenant[tenant].push_back(lease);
  }
  std::vector<std::vector<std::string>> commands;
  for (const auto& [tenant, leases] : by_tenant)
    for (std::size_t from = 0; from < leases.size(); from += kLeasesPerRefresh) {
      std::vector<std::string> argv = {"EVAL", kRefreshLeasesScript, "1", lease_key(tenant), std::to_string(ttl_ms_)};
      const auto to = std::min(leases.size(), from + kLeasesPerRefresh);
      argv.insert(argv.end(), leases.begin() + static_cast<std::ptrdiff_t>(from), leases.begin() + static_cast<std::ptrdiff_t>(to));
      commands.push_back(std::move(argv));
    }
  if (commands.empty()) return false;
  // One script run at a time with a breath between: 10,000 leases at once kept Redis (and a core
  // of a small box) busy for ~15 ms, which the streams' p99 felt; spread, it is never more than
  // a fraction of a millisecond.
  for (std::size_t i = 0; i < commands.size(); ++i) {
    auto r = redis.command(commands[i]);
    (void)r;
    if (i + 1 == commands.size()) break;
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(2), [&] { return stopping_; })) break;
  }
  return true;
}

void StreamLeases::run() {
  RedisClient redis(redis_config_);
  const auto every = std::chrono::milliseconds(std::max(1, ttl_ms_ / 3));
  auto next_refresh = std::chrono::steady_clock::now() + every;
  for (;;) {
    std::deque<std::pair<std::string, std::string>> closed;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_refresh, [&] { return stopping_ || !to_remove_.empty(); });
      closed.swap(to_remove_);
      if (stopping_) {
        // Going away: this process's leases go too (best effort; they expire anyway).
        for (const auto& [lease, tenant] : local_) closed.emplace_back(tenant, lease);
        local_.clear();
        if (redis_down_) closed.clear();  // no shutdown waiting on a Redis known to be away
        stop = true;
      }
    }
    try {
      if (!closed.empty()) {
        std::vector<std::vector<std::string>> commands;
        for (const auto& [tenant, lease] : closed) commands.push_back({"ZREM", lease_key(tenant), lease});
        redis.pipeline(commands);  // a lost removal only means the lease expires on its own
      }
      if (!stop && std::chrono::steady_clock::now() >= next_refresh) {
        next_refresh = std::chrono::steady_clock::now() + every;
        if (refresh(redis)) note_redis_up();
      }
    } catch (const std::exception& e) {
      if (!stop) note_redis_down(std::string("refreshing stream leases: ") + e.what());
    }
    if (stop) return;
  }
}

}  // namespace sb
