#pragma once
// When to try a failed webhook delivery again: a fixed schedule with ±jitter (so endpoints that
// failed together don't retry together), and a receiver's Retry-After honoured but clamped.
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace sb {

class RetrySchedule {
 public:
  using Seconds = std::chrono::seconds;
  // delays: wait before retry 1, 2, … ; jitter: 0.2 = ±20 %. Throws ConfigError for an empty
  // schedule, a non-positive delay or jitter outside [0, 1).
  RetrySchedule(std::vector<Seconds> delays, double jitter);
  // Parses "5s,5m,30m,2h,5h,10h,10h" (s, m, h, d units). Throws ConfigError naming the bad item.
  static RetrySchedule parse(const std::string& text, double jitter);

  // Delay before the next attempt after `failed_attempts` failures (1 = the first attempt
  // failed), or nullopt when the schedule is exhausted (dead-letter it). A Retry-After from the
  // receiver replaces the scheduled delay, clamped to [1 s, the schedule's longest delay].
  std::optional<Seconds> next_delay(int failed_attempts, std::optional<Seconds> retry_after, std::mt19937_64& rng) const;
  int max_attempts() const { return static_cast<int>(delays_.size()) + 1; }

 private:
  std::vector<Seconds> delays_;
  double jitter_;
};

}  // namespace sb
