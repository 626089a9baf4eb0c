// The per-session send rate is shared through the real Redis server.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/redis.hpp"

TEST_CASE("redis: per-session rate limit holds across threads (replicas)", "[integration][redis]") {
  sb::RedisConfig rc;
  rc.url = sbtest::require_env("SWITCHBOARD_TEST_REDIS_URL");
  sb::RedisClient client(rc);
  REQUIRE(client.ping());
  sb::SessionRateLimiter limiter(rc, 5);
  const auto tenant = sb::new_uuid_v7();  // fresh keys for this run
  std::atomic<int> granted{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 4; ++i)
        if (limiter.acquire(tenant, "main", 10000)) ++granted;
    });
  for (auto& t : threads) t.join();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(granted == 12);
  // 12 sends at 5/s need at least three one-second windows: two boundaries to wait for.
  CHECK(elapsed >= std::chrono::milliseconds(1000));
  // Another session is not held back by this one.
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(limiter.acquire(tenant, "other", 10000));
  CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::milliseconds(500));
  sb::RedisConfig bad = rc;
  bad.url = "redis://127.0.0.1:1";
  sb::RedisClient down(bad);
  CHECK_FALSE(down.ping());
  CHECK_THROWS_AS(sb::RedisClient(sb::RedisConfig{"http://nope", 100}), sb::ConfigError);
}
