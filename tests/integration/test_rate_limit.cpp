// Per-session pacing is shared through the real Redis server (RedisPacer, the lane workers'
// pacer): several replicas see one budget per session.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/workers/redis_pacer.hpp"

namespace {
// Asks until the pacer grants a slot, waiting as long as it says (what the session engine
// does with a timer). False if it never granted within the deadline.
bool acquire(sb::RedisPacer& pacer, const std::string& tenant, const std::string& session,
             std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    std::promise<std::chrono::milliseconds> answer;
    auto fut = answer.get_future();
    pacer.reserve(tenant, session, [&](std::chrono::milliseconds wait, std::exception_ptr err) {
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

TEST_CASE("redis: per-session pacing holds across replicas", "[integration][redis]") {
  sb::RedisConfig rc;
  rc.url = sbtest::require_env("SWITCHBOARD_TEST_REDIS_URL");
  sb::RedisClient client(rc);
  REQUIRE(client.ping());
  const auto tenant = sb::new_uuid_v7();  // fresh keys for this run
  std::atomic<int> granted{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> replicas;
  for (int t = 0; t < 3; ++t)
    replicas.emplace_back([&] {
      sb::RedisPacer pacer(rc, 5);  // each replica its own pacer and connection
      for (int i = 0; i < 4; ++i)
        if (acquire(pacer, tenant, "main")) ++granted;
    });
  for (auto& t : replicas) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(granted == 12);
  // 12 sends at 5/s, one slot every 200 ms whoever asks: at least 11 intervals.
  CHECK(elapsed >= std::chrono::milliseconds(1000));
  CHECK(elapsed >= std::chrono::milliseconds(11 * 200 - 50));
  // Another session is not held back by this one.
  sb::RedisPacer other(rc, 5);
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(acquire(other, tenant, "other"));
  CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::milliseconds(500));
  sb::RedisConfig bad = rc;
  bad.url = "redis://127.0.0.1:1";
  sb::RedisClient down(bad);
  CHECK_FALSE(down.ping());
  CHECK_THROWS_AS(sb::RedisClient(sb::RedisConfig{"http://nope", 100}), sb::ConfigError);
}
