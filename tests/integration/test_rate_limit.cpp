// Per-session pacing through the real Redis server: the pacing script's math (every limit of a
// policy, one at a time, on Redis' clock) and RedisPacer, the lane workers' pacer — several
// replicas see one budget per session, one script call per paced send.
#include <catch2/catch.hpp>

#include <algorithm>
#include <mutex>
#include <chrono>
#include <future>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/workers/redis_pacer.hpp"

using namespace std::chrono_literals;

using sbtest::now_ms;

namespace {

sb::RedisConfig redis_config() {
  sb::RedisConfig rc;
  rc.url = sbtest::require_env("SWITCHBOARD_TEST_REDIS_URL");
  return rc;
}

// Runs the script once (EVAL: no cached script needed).
sb::PaceVerdict pace(sb::RedisClient& redis, const sb::PaceRequest& r) {
  auto argv = sb::PacingScript::reserve_command(r);
  argv[0] = "EVAL";
  argv[1] = sb::PacingScript::reserve_source();
  return sb::PacingScript::verdict(*redis.command(argv));
}


// A call counter of INFO commandstats ("cmdstat_evalsha" …), 0 when never called.
uint64_t calls(sb::RedisClient& redis, const std::string& command) {
  auto r = redis.command({"INFO", "commandstats"});
  const std::string info(r->str, r->len);
  const auto at = info.find("cmdstat_" + command + ":calls=");
  if (at == std::string::npos) return 0;
  return std::stoull(info.substr(at + command.size() + 15));
}
uint64_t all_calls(sb::RedisClient& redis) {
  auto r = redis.command({"INFO", "commandstats"});
  const std::string info(r->str, r->len);
  uint64_t total = 0;
  for (std::size_t at = info.find(":calls="); at != std::string::npos; at = info.find(":calls=", at + 1))
    total += std::stoull(info.substr(at + 7));
  return total;
}

// Asks until the pacer grants a slot, waiting as long as it says (what the session engine
// does with a timer). False if it never granted within the deadline.
bool acquire(sb::RedisPacer& pacer, const std::string& tenant, const std::string& session,
             std::chrono::milliseconds deadline = 10s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    std::promise<std::chrono::milliseconds> answer;
    auto fut = answer.get_future();
    pacer.reserve(tenant, session, "+15550001111", [&](std::chrono::milliseconds wait, std::exception_ptr err) {
      if (err) answer.set_exception(err);
      else answer.set_value(wait);
    });
    const auto wait = fut.get();
    if (wait.count() == 0) return true;
    std::this_thread::sleep_for(wait);  // the pacer's own answer: when to ask again
  }
  return false;
}

}  // namespace

TEST_CASE("redis: the pacing script — per-minute and per-hour sliding caps, warm-up days, Cloud API number "
          "and pair rates, throttle back-off",
          "[integration][redis][pacing]") {
  auto rc = redis_config();
  sb::RedisClient redis(rc);
  REQUIRE(redis.ping());
  const auto tenant = sb::new_uuid_v7();  // fresh keys for this run
  auto request = [&](const std::string& session, const sb::PacingPolicy& p) {
    return sb::PaceRequest{tenant, session, "+15550001111", p, false, std::nullopt, 0};
  };

  SECTION("per_minute: N sends at once, then a wait until the oldest leaves the minute; a refusal takes nothing") {
    sb::PacingPolicy p;
    p.per_minute = 5;
    auto r = request("minute", p);
    const auto t0 = now_ms();
    for (int i = 0; i < 5; ++i) CHECK(pace(redis, r).wait == 0ms);
    auto v = pace(redis, r);
    CHECK(v.limit == "per_minute");
    CHECK(v.wait > 60000ms - std::chrono::milliseconds(now_ms() - t0) - 50ms);
    CHECK(v.wait <= 60000ms);
    CHECK(pace(redis, r).limit == "per_minute");
    const auto key = sb::PacingScript::key_prefix(tenant, "minute") + "min";
    CHECK(redis.command({"LLEN", key})->integer == 5);  // the refusals were not counted
    CHECK(redis.command({"PTTL", key})->integer <= 60000);
  }
  SECTION("per_hour: the same over an hour, whatever the minute cap says") {
    sb::PacingPolicy p;
    p.per_minute = 100;
    p.per_hour = 3;
    auto r = request("hour", p);
    for (int i = 0; i < 3; ++i) CHECK(pace(redis, r).wait == 0ms);
    auto v = pace(redis, r);
    CHECK(v.limit == "per_hour");
    CHECK(v.wait > 3600000ms - 5000ms);
    CHECK(v.wait <= 3600000ms);
  }
  SECTION("min_gap + jitter: the next send waits the gap drawn for this one") {
    sb::PacingPolicy p;
    p.min_gap_ms = 300;
    p.jitter_ms = 200;
    auto r = request("gap", p);
    r.jitter_ms = 150;  // the caller's draw
    CHECK(pace(redis, r).wait == 0ms);
    auto v = pace(redis, r);
    CHECK(v.limit == "min_gap");
    CHECK(v.wait > 400ms);
    CHECK(v.wait <= 450ms);
    r.jitter_ms = 10000;  // clamped to jitter_ms
    std::this_thread::sleep_for(v.wait);
    CHECK(pace(redis, r).wait == 0ms);
    CHECK(pace(redis, r).wait <= 500ms);
  }
  SECTION("warm-up: day 1's cap, day 2's cap, then none; the wait ends with the warm-up day") {
    sb::PacingPolicy p;
    p.warmup_daily_caps = {2, 4};
    auto r = request("warm0", p);
    r.first_working_ms = now_ms() - 60000;  // paired a minute ago: day 1, cap 2
    CHECK(pace(redis, r).wait == 0ms);
    CHECK(pace(redis, r).wait == 0ms);
    auto v = pace(redis, r);
    CHECK(v.limit == "warmup_daily_cap");
    CHECK(v.wait > 86400000ms - 60000ms - 5000ms);
    CHECK(v.wait <= 86400000ms - 60000ms);
    r = request("warm1", p);
    r.first_working_ms = now_ms() - 86400000 - 3600000;  // day 2 (an hour in), cap 4
    for (int i = 0; i < 4; ++i) CHECK(pace(redis, r).wait == 0ms);
    v = pace(redis, r);
    CHECK(v.limit == "warmup_daily_cap");
    CHECK(v.wait > 82800000ms - 5000ms);
    CHECK(v.wait <= 82800000ms);
    r = request("warm2", p);
    r.first_working_ms = now_ms() - 3 * 86400000LL;  // past the ramp: no cap
    for (int i = 0; i < 20; ++i) CHECK(pace(redis, r).wait == 0ms);
    r = request("warm3", p);  // never WORKING yet: day 1 from now
    CHECK(pace(redis, r).wait == 0ms);
    CHECK(pace(redis, r).wait == 0ms);
    CHECK(pace(redis, r).limit == "warmup_daily_cap");
  }
  SECTION("Cloud API: the number's throughput and the recipient pair gap, only for Cloud API sessions") {
    sb::PacingPolicy p;
    p.number_per_s = 10;  // one per 100 ms
    p.pair_gap_ms = 2000;
    auto r = request("cloud", p);
    r.cloud_api = true;
    CHECK(pace(redis, r).wait == 0ms);
    auto v = pace(redis, r);  // the same recipient: the pair gap dominates
    CHECK(v.limit == "pair_gap");
    CHECK(v.wait > 1900ms);
    r.to = "+15550002222";
    v = pace(redis, r);  // another recipient: only the number's rate
    CHECK(v.limit == "number_per_s");
    CHECK(v.wait > 0ms);
    CHECK(v.wait <= 100ms);
    std::this_thread::sleep_for(v.wait);
    CHECK(pace(redis, r).wait == 0ms);
    auto other = request("engine", p);  // not a Cloud API session: neither applies
    for (int i = 0; i < 5; ++i) CHECK(pace(redis, other).wait == 0ms);
  }
  SECTION("throttle back-off: every send of the session waits it out; a shorter one doesn't cut it") {
    sb::PacingPolicy p;
    p.min_gap_ms = 1;
    auto r = request("throttled", p);
    auto backoff = [&](std::chrono::milliseconds ms) {
      auto argv = sb::PacingScript::backoff_command(tenant, "throttled", ms);
      argv[0] = "EVAL";
      argv[1] = sb::PacingScript::backoff_source();
      return redis.command(argv)->integer;
    };
    CHECK(backoff(800ms) == 800);
    CHECK(backoff(100ms) > 700);  // the longer one stands
    auto v = pace(redis, r);
    CHECK(v.limit == "throttled");
    CHECK(v.wait > 600ms);
    CHECK(v.wait <= 800ms);
    CHECK(pace(redis, request("not_throttled", p)).wait == 0ms);
  }
}

// bench_pipeline showed 0.08 policy queries per message: each session's cached policy expired on
// its own clock, so a busy worker read one or two per batch. A load now brings along every policy
// past half its age, and the expiries fall together.
TEST_CASE("redis: a pacer reads stale session policies together, with those past half their age", "[integration][redis][pacing]") {
  auto rc = redis_config();
  const auto tenant = sb::new_uuid_v7();
  std::mutex mu;
  std::vector<std::vector<std::string>> loads;  // the sessions each query asked for
  sb::RedisPacer::Options o;
  o.policy_cache = 2000ms;
  sb::RedisPacer pacer(rc, o, [&](const std::vector<sb::PacingStore::Key>& keys) {
    std::lock_guard l(mu);
    std::vector<std::string> names;
    for (const auto& k : keys) names.push_back(k.second);
    std::sort(names.begin(), names.end());
    loads.push_back(names);
    return std::map<sb::PacingStore::Key, sb::SessionPacing>{};
  });
  CHECK(acquire(pacer, tenant, "early"));
  std::this_thread::sleep_for(300ms);  // the cache's age is the subject here: "early" still fresh
  CHECK(acquire(pacer, tenant, "late"));
  std::this_thread::sleep_for(1800ms);  // "early" is stale (2,100 ms), "late" past half (1,800 ms)
  CHECK(acquire(pacer, tenant, "early"));
  CHECK(acquire(pacer, tenant, "late"));  // cached again by the query before: no query
  std::lock_guard l(mu);
  REQUIRE(loads.size() == 3);
  CHECK(loads[1] == std::vector<std::string>{"late"});
  CHECK(loads[2] == std::vector<std::string>{"early", "late"});
  CHECK(pacer.stats().policy_loads == 3);
}

TEST_CASE("redis: per-session pacing holds across replicas, one script call per paced send", "[integration][redis][pacing]") {
  auto rc = redis_config();
  sb::RedisClient redis(rc);
  REQUIRE(redis.ping());
  const auto tenant = sb::new_uuid_v7();
  sb::RedisPacer::Options o;
  o.defaults.min_gap_ms = 150;
  o.defaults.jitter_ms = 100;
  redis.command({"SCRIPT", "FLUSH"});  // the pacers find their script missing and load it
  const auto evalsha0 = calls(redis, "evalsha");
  std::atomic<int> granted{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> replicas;
  for (int t = 0; t < 3; ++t)
    replicas.emplace_back([&] {
      sb::RedisPacer pacer(rc, o);  // each replica its own pacer and connection
      for (int i = 0; i < 4; ++i)
        if (acquire(pacer, tenant, "main")) ++granted;
    });
  for (auto& t : replicas) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(granted == 12);
  // 12 sends 150..250 ms apart whoever asks: at least 11 gaps.
  CHECK(elapsed >= 11 * 150ms);
  CHECK(elapsed < 11 * 250ms + 2000ms);
  // Every ask was one EVALSHA (refused asks included, a NOSCRIPT answer repeated once).
  const auto asks = calls(redis, "evalsha") - evalsha0;
  CHECK(asks >= 12);

  // Another session is not held back by this one; a session whose policy limits nothing costs
  // no Redis call at all.
  sb::RedisPacer other(rc, o);
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(acquire(other, tenant, "other"));
  CHECK(std::chrono::steady_clock::now() - t1 < 500ms);
  sb::RedisPacer unlimited(rc, {});
  const auto before = calls(redis, "evalsha");
  for (int i = 0; i < 5; ++i) CHECK(acquire(unlimited, tenant, "free"));
  CHECK(calls(redis, "evalsha") == before);
  CHECK(unlimited.stats().unlimited == 5);

  // Redis operations per paced send (INFO commandstats; the script's own calls included).
  sb::RedisPacer::Options gap_only;
  gap_only.defaults.min_gap_ms = 1;
  gap_only.defaults.per_minute = 1000;
  gap_only.defaults.per_hour = 10000;
  sb::RedisPacer bench(rc, gap_only);
  acquire(bench, tenant, "warm-script");
  const auto ops0 = all_calls(redis), sha0 = calls(redis, "evalsha");
  int sends = 0;
  for (int i = 0; i < 50; ++i) sends += acquire(bench, tenant, "ops" + std::to_string(i)) ? 1 : 0;
  const auto ops = all_calls(redis) - ops0 - 2;  // the two INFO calls
  const auto trips = calls(redis, "evalsha") - sha0;
  CHECK(sends == 50);
  CHECK(trips == 50);  // one round trip per paced send
  WARN("Redis per paced send (min gap + per-minute + per-hour caps): " << trips / 50.0 << " round trip(s), "
                                                                       << static_cast<double>(ops) / sends
                                                                       << " commands counted by INFO commandstats");

  sb::RedisConfig bad = rc;
  bad.url = "redis://127.0.0.1:1";
  sb::RedisClient down(bad);
  CHECK_FALSE(down.ping());
  CHECK_THROWS_AS(sb::RedisClient(sb::RedisConfig{"http://nope", 100}), sb::ConfigError);
}
