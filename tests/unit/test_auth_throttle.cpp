#include <catch2/catch.hpp>

#include "switchboard/producers/auth_throttle.hpp"

using Clock = sb::AuthThrottle::Clock;
using std::chrono::seconds;

TEST_CASE("auth throttle: more than limit unknown keys in a window block the source for block_s, reported once",
          "[unit][security]") {
  sb::AuthThrottle t({3, 60, 10});
  const auto t0 = Clock::now();
  for (int i = 0; i < 3; ++i) CHECK_FALSE(t.failed("10.0.0.1", t0 + seconds(i)));
  CHECK(t.blocked_for_s("10.0.0.1", t0 + seconds(3)) == 0);
  CHECK(t.failed("10.0.0.1", t0 + seconds(3)));  // the 4th: the block starts, reported
  CHECK(t.blocked_for_s("10.0.0.1", t0 + seconds(3)) == 10);
  CHECK(t.blocked_for_s("10.0.0.1", t0 + seconds(12) + std::chrono::milliseconds(500)) == 1);  // rounded up
  CHECK_FALSE(t.failed("10.0.0.1", t0 + seconds(5)));  // during the block: not reported again
  CHECK(t.refused("10.0.0.1") == 2);  // the two blocked_for_s calls answered "blocked"
  // Other sources are not affected.
  CHECK(t.blocked_for_s("10.0.0.2", t0 + seconds(4)) == 0);
  // After the block the count starts over.
  CHECK(t.blocked_for_s("10.0.0.1", t0 + seconds(13)) == 0);
  for (int i = 0; i < 3; ++i) CHECK_FALSE(t.failed("10.0.0.1", t0 + seconds(14 + i)));
  CHECK(t.failed("10.0.0.1", t0 + seconds(20)));
}

TEST_CASE("auth throttle: failures spread wider than the window never block, limit 0 turns it off", "[unit][security]") {
  sb::AuthThrottle t({3, 60, 10});
  const auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) CHECK_FALSE(t.failed("10.0.0.1", t0 + seconds(31 * i)));  // ≤ 2 per 60 s window
  CHECK(t.blocked_for_s("10.0.0.1", t0 + seconds(31 * 20)) == 0);

  sb::AuthThrottle off({0, 60, 10});
  for (int i = 0; i < 100; ++i) CHECK_FALSE(off.failed("10.0.0.1", t0));
  CHECK(off.blocked_for_s("10.0.0.1", t0) == 0);
}

TEST_CASE("auth throttle: sprayed from very many addresses, memory stays bounded and blocks stay", "[unit][security]") {
  sb::AuthThrottle t({1, 60, 600});
  const auto t0 = Clock::now();
  t.failed("blocked", t0);
  REQUIRE(t.failed("blocked", t0));
  for (int i = 0; i < 250000; ++i) t.failed("s" + std::to_string(i), t0 + seconds(1));
  CHECK(t.blocked_for_s("blocked", t0 + seconds(2)) > 0);
}
