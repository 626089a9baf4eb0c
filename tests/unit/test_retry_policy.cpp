// The one retry / back-off / poison rule (core/retry_policy.hpp).
#include <catch2/catch.hpp>
#include <random>
#include <thread>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/retry_policy.hpp"

using namespace std::chrono_literals;

TEST_CASE("retry policy: retryable errors back off exponentially, capped, poison gives up at once", "[unit][retry]") {
  std::mt19937_64 rng(7);
  sb::RetryPolicy p({100ms, 1000ms, 2.0, 0.0, 0});
  const sb::Unavailable down("postgres is down");
  CHECK(p.after(down, 1, rng).retry);
  CHECK(p.after(down, 1, rng).delay == 100ms);
  CHECK(p.after(down, 3, rng).delay == 400ms);
  CHECK(p.after(down, 30, rng).delay == 1000ms);  // capped, and never gives up without a cap

  // A non-retryable error (Redis READONLY mapped to Internal, a bad row) is poison: retrying the
  // same input cannot help, so the caller moves it aside instead of wedging on it (review C1, C2).
  const sb::Error bug(sb::ErrorKind::Internal, "READONLY You can't write against a read only replica");
  const auto d = p.after(bug, 1, rng);
  CHECK_FALSE(d.retry);
  CHECK(d.why.find("READONLY") != std::string::npos);
  CHECK_FALSE(p.after(std::runtime_error("not ours"), 1, rng).retry);
  CHECK_FALSE(p.after(std::make_exception_ptr(sb::InvalidInput("bad")), 1, rng).retry);
  CHECK(p.after(std::make_exception_ptr(down), 1, rng).retry);
}

TEST_CASE("retry policy: an attempt cap ends retryable failures too, jitter stays in bounds", "[unit][retry]") {
  std::mt19937_64 rng(42);
  sb::RetryPolicy p({200ms, 10s, 2.0, 0.2, 3});
  CHECK(p.after_retryable("503", 1, rng).retry);
  CHECK(p.after_retryable("503", 2, rng).retry);
  const auto last = p.after_retryable("503", 3, rng);
  CHECK_FALSE(last.retry);
  CHECK(last.why == "gave up after 3 attempts: 503");
  for (int i = 0; i < 200; ++i) {
    const auto d = p.delay(2, rng);  // 400 ms ± 20 %
    CHECK(d >= 320ms);
    CHECK(d <= 480ms);
  }
}

TEST_CASE("stopper: a back-off sleep ends as soon as stop is requested", "[unit][retry][concurrency]") {
  sb::Stopper s;
  CHECK(s.sleep_for(1ms));
  std::thread t([&] { s.request_stop(); });
  CHECK_FALSE(s.sleep_for(std::chrono::hours(1)));  // returns on the stop, not after an hour
  t.join();
  CHECK(s.stopping());
}
