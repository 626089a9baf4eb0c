#include "switchboard/workers/redis_pacer.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"

namespace sb {
namespace {

// KEYS: hold, gap, min, hour, warm, num, pair. ARGV: gap ms (min gap + jitter drawn), per
// minute, per hour, first WORKING (Unix ms, -1: none), daily caps ("20,40,80" or ""), number
// interval ms (0: none), pair gap ms. Every limit is checked first; only when none asks for a
// wait are they all taken, so a refused request changes nothing. Returns {wait ms, limit}.
const std::string kReserve = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, limit = 0, ''
local function later(w, why) if w > wait then wait = w; limit = why end end
local hold = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold > now then later(hold - now, 'throttled') end
local gap = tonumber(ARGV[1])
if gap > 0 then
  local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
  if nxt > now then later(nxt - now, 'min_gap') end
end
local function window(key, cap, span, why)
  if cap <= 0 then return end
  local oldest = redis.call('LINDEX', key, cap - 1)
  if oldest and tonumber(oldest) + span > now then later(tonumber(oldest) + span - now, why) end
end
local pm, ph = tonumber(ARGV[2]), tonumber(ARGV[3])
window(KEYS[3], pm, 60000, 'per_minute')
window(KEYS[4], ph, 3600000, 'per_hour')
local day, cap, count = 0, 0, 0
if ARGV[5] ~= '' then
  local first = tonumber(ARGV[4])
  if first < 0 or first > now then first = now end
  day = math.floor((now - first) / 86400000)
  local i = 0
  for c in string.gmatch(ARGV[5], '[^,]+') do
    if i == day then cap = tonumber(c) end
    i = i + 1
  end
  if cap > 0 then
    local st = redis.call('HMGET', KEYS[5], 'd', 'n')
    if tonumber(st[1]) == day then count = tonumber(st[2]) or 0 end
    if count >= cap then later(first + (day + 1) * 86400000 - now, 'warmup_daily_cap') end
  end
end
local interval = tonumber(ARGV[6])
local tat = 0
if interval > 0 then
  tat = tonumber(redis.call('GET', KEYS[6]) or '0')
  if tat > now then later(tat - now, 'number_per_s') end
end
local pair = tonumber(ARGV[7])
if pair > 0 then
  local nxt = tonumber(redis.call('GET', KEYS[7]) or '0')
  if nxt > now then later(nxt - now, 'pair_gap') end
end
if wait > 0 then return {math.ceil(wait), limit} end
if gap > 0 then redis.call('SET', KEYS[2], now + gap, 'PX', gap + 1000) end
if pm > 0 then
  redis.call('LPUSH', KEYS[3], now)
  redis.call('LTRIM', KEYS[3], 0, pm - 1)
  redis.call('PEXPIRE', KEYS[3], 60000)
end
if ph > 0 then
  redis.call('LPUSH', KEYS[4], now)
  redis.call('LTRIM', KEYS[4], 0, ph - 1)
  redis.call('PEXPIRE', KEYS[4], 3600000)
end
if cap > 0 then
  redis.call('HSET', KEYS[5], 'd', day, 'n', count + 1)
  redis.call('PEXPIRE', KEYS[5], 172800000)
end
if interval > 0 then
  redis.call('SET', KEYS[6], string.format('%.3f', math.max(tat, now) + interval), 'PX', math.ceil(interval) + 1000)
end
if pair > 0 then redis.call('SET', KEYS[7], now + pair, 'PX', pair + 1000) end
return {0, ''}
)LUA";

// KEYS: hold. ARGV: wait ms. Sends of the session wait at least that long from now (an
// earlier, longer back-off is kept). Returns the back-off left, ms.
const std::string kBackoff = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > cur then
  redis.call('SET', KEYS[1], now + ms, 'PX', ms)
  return ms
end
return cur - now
)LUA";

std::string sha1_hex(const std::string& s) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  char out[2 * SHA_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA_DIGEST_LENGTH; ++i) std::snprintf(out + 2 * i, 3, "%02x", d[i]);
  return out;
}

std::string caps_text(const std::vector<int>& caps) {
  std::string out;
  for (int c : caps) out += (out.empty() ? "" : ",") + std::to_string(c);
  return out;
}

bool noscript(const redisReply& r) {
  return r.type == REDIS_REPLY_ERROR && std::string(r.str, r.len).rfind("NOSCRIPT", 0) == 0;
}

}  // namespace

const std::string& PacingScript::reserve_source() { return kReserve; }
const std::string& PacingScript::backoff_source() { return kBackoff; }
const std::string& PacingScript::reserve_sha() {
  static const std::string sha = sha1_hex(kReserve);
  return sha;
}
const std::string& PacingScript::backoff_sha() {
  static const std::string sha = sha1_hex(kBackoff);
  return sha;
}

std::string PacingScript::key_prefix(const std::string& tenant, const std::string& session) {
  return "sb:pace:{" + tenant + "/" + session + "}:";
}

std::vector<std::string> PacingScript::reserve_command(const PaceRequest& r) {
  const auto k = key_prefix(r.tenant, r.session);
  const auto& p = r.policy;
  const int gap = p.min_gap_ms + std::clamp(r.jitter_ms, 0, p.jitter_ms);
  char interval[32] = "0";
  if (r.cloud_api && p.number_per_s > 0) std::snprintf(interval, sizeof interval, "%.3f", 1000.0 / p.number_per_s);
  return {"EVALSHA", reserve_sha(), "7", k + "hold", k + "gap", k + "min", k + "hour", k + "warm", k + "num",
          k + "pair:" + r.to, std::to_string(gap), std::to_string(p.per_minute), std::to_string(p.per_hour),
          std::to_string(r.first_working_ms.value_or(-1)), caps_text(p.warmup_daily_caps), interval,
          std::to_string(r.cloud_api ? p.pair_gap_ms : 0)};
}

std::vector<std::string> PacingScript::backoff_command(const std::string& tenant, const std::string& session,
                                                       std::chrono::milliseconds wait) {
  return {"EVALSHA", backoff_sha(), "1", key_prefix(tenant, session) + "hold", std::to_string(std::max<int64_t>(1, wait.count()))};
}

PaceVerdict PacingScript::verdict(const redisReply& r) {
  if (r.type == REDIS_REPLY_ERROR) {
    const std::string msg(r.str, r.len);
    for (const char* transient : {"READONLY", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "OOM", "CLUSTERDOWN"})
      if (msg.rfind(transient, 0) == 0) throw Unavailable("Redis refused the pacing script for now: " + msg);
    throw Error(ErrorKind::Internal, "pacing script failed: " + msg);
  }
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 2 || r.element[0]->type != REDIS_REPLY_INTEGER)
    throw Error(ErrorKind::Internal, "pacing script returned an unexpected reply (type " + std::to_string(r.type) + ")");
  PaceVerdict v;
  v.wait = std::chrono::milliseconds(r.element[0]->integer);
  if (r.element[1]->type == REDIS_REPLY_STRING) v.limit.assign(r.element[1]->str, r.element[1]->len);
  return v;
}

RedisPacer::RedisPacer(const RedisConfig& config, Options options, Load load)
    : config_(config), options_(std::move(options)), load_(std::move(load)), thread_([this] { loop(); }) {}

RedisPacer::~RedisPacer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RedisPacer::reserve(const std::string& tenant, const std::string& session, const std::string& to, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back({tenant, session, to, std::move(done), {}});
  }
  cv_.notify_one();
}

void RedisPacer::backoff(const std::string& tenant, const std::string& session, std::chrono::milliseconds wait) {
  if (wait.count() <= 0) return;
  {
    std::lock_guard lock(mu_);
    queue_.push_back({tenant, session, {}, {}, wait});
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
    serve(batch, redis);
  }
}

const RedisPacer::Cached* RedisPacer::policy_of(const PacingStore::Key& key) {
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : &it->second;
}

void RedisPacer::serve(std::deque<Request>& batch, RedisClient& redis) {
  const auto now = std::chrono::steady_clock::now();
  // 1. Policies: the sessions not seen lately, in one query.
  std::vector<PacingStore::Key> stale;
  std::set<PacingStore::Key> asked;
  for (const auto& r : batch) {
    if (!r.done) continue;
    PacingStore::Key key{r.tenant, r.session};
    auto* c = policy_of(key);
    if ((!c || now - c->loaded >= options_.policy_cache) && asked.insert(key).second) stale.push_back(key);
  }
  std::exception_ptr load_error;
  if (!stale.empty()) {
    // Policies past half their age come along, so the sessions' expiries fall together and a
    // busy worker reads them in one query per cache period, not one per batch (bench_pipeline:
    // 0.08 policy queries per message before).
    for (const auto& [key, c] : cache_)
      if (now - c.loaded >= options_.policy_cache / 2 && stale.size() < 1000 && asked.insert(key).second)
        stale.push_back(key);
    if (cache_.size() > 65536)  // forget sessions long idle
      std::erase_if(cache_, [&](const auto& kv) { return now - kv.second.loaded >= 10 * options_.policy_cache; });
    try {
      std::map<PacingStore::Key, SessionPacing> found;
      if (load_) found = load_(stale);
      ++stats_.policy_loads;
      for (const auto& key : stale) {
        SessionPacing p;
        if (auto f = found.find(key); f != found.end()) p = std::move(f->second);
        else p.provider = "simulator";  // unknown here: the claim dead-letters it; nothing to pace
        auto policy = p.effective(options_.defaults);
        cache_[key] = Cached{std::move(p), std::move(policy), now};
      }
    } catch (...) {
      load_error = std::current_exception();
    }
  }

  // 2. One pipeline: a script call per paced send and per back-off.
  std::vector<std::vector<std::string>> commands;
  std::vector<Request*> owners;
  for (auto& r : batch) {
    if (!r.done) {
      ++stats_.backoffs;
      commands.push_back(PacingScript::backoff_command(r.tenant, r.session, r.backoff));
      owners.push_back(&r);
      continue;
    }
    ++stats_.reserves;
    const auto* c = policy_of({r.tenant, r.session});
    if (!c) {
      r.done(std::chrono::milliseconds(0), load_error);  // its policy could not be read: retried
      r.done = nullptr;
      continue;
    }
    if (!c->policy.limits_sends(c->pacing.provider)) {
      ++stats_.unlimited;
      r.done(std::chrono::milliseconds(0), nullptr);
      r.done = nullptr;
      continue;
    }
    PaceRequest pr{r.tenant, r.session, r.to, c->policy, c->pacing.provider == "cloud_api", c->pacing.first_working_ms, 0};
    if (c->policy.jitter_ms > 0) pr.jitter_ms = std::uniform_int_distribution<int>(0, c->policy.jitter_ms)(rng_);
    commands.push_back(PacingScript::reserve_command(pr));
    owners.push_back(&r);
  }
  if (commands.empty()) return;

  std::vector<RedisReplyPtr> replies;
  try {
    ++stats_.redis_round_trips;
    replies = redis.pipeline(commands);
    // Redis forgot our scripts (a restart, SCRIPT FLUSH): load them and ask again, once.
    std::vector<std::size_t> again;
    for (std::size_t i = 0; i < replies.size(); ++i)
      if (noscript(*replies[i])) again.push_back(i);
    if (!again.empty()) {
      redis.command({"SCRIPT", "LOAD", kReserve});
      redis.command({"SCRIPT", "LOAD", kBackoff});
      std::vector<std::vector<std::string>> retry;
      for (auto i : again) retry.push_back(commands[i]);
      ++stats_.redis_round_trips;
      auto second = redis.pipeline(retry);
      for (std::size_t k = 0; k < again.size(); ++k) replies[again[k]] = std::move(second[k]);
    }
  } catch (...) {
    const auto err = std::current_exception();
    for (auto* r : owners)
      if (r->done) r->done(std::chrono::milliseconds(0), err);
    return;
  }
  for (std::size_t i = 0; i < owners.size(); ++i) {
    auto* r = owners[i];
    if (!r->done) {
      if (replies[i]->type == REDIS_REPLY_ERROR)
        log::warn("pacing.backoff_failed", {{"tenant", r->tenant}, {"session", r->session},
                                            {"detail", std::string(replies[i]->str, replies[i]->len)}});
      continue;
    }
    try {
      const auto v = PacingScript::verdict(*replies[i]);
      if (v.wait.count() > 0) {
        ++stats_.waits;
        log::debug("pacing.wait", {{"tenant", r->tenant}, {"session", r->session}, {"limit", v.limit},
                                   {"wait_ms", std::to_string(v.wait.count())}});
      }
      r->done(v.wait, nullptr);
    } catch (...) {
      r->done(std::chrono::milliseconds(0), std::current_exception());
    }
  }
}

}  // namespace sb
