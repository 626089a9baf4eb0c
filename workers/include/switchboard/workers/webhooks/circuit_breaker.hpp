#pragma once
// Per-endpoint circuit breaker: an endpoint that fails most of its recent attempts is paused
// (open) instead of being hammered; after a cool-down one probe is let through (half-open); a
// success closes it, a failure re-opens it for twice as long (up to a ceiling).
#include <chrono>
#include <deque>

namespace sb {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  struct Settings {
    std::size_t window = 20;         // recent attempts considered
    std::size_t min_attempts = 10;   // don't judge on fewer
    double failure_ratio = 0.8;      // open at or above this share of failures
    std::chrono::seconds cool_down{30};
    std::chrono::seconds max_cool_down{600};
  };
  enum class State { Closed, Open, HalfOpen };

  CircuitBreaker() : CircuitBreaker(Settings{}) {}
  explicit CircuitBreaker(Settings s) : s_(s), cool_down_(s.cool_down) {}

  // May an attempt go out now? In half-open state only one probe at a time is allowed.
  bool allow(Clock::time_point now);
  void record(bool success, Clock::time_point now);
  State state(Clock::time_point now) const;
  // While open: how long until the half-open probe (zero otherwise).
  Clock::duration remaining_open(Clock::time_point now) const {
    return state_ == State::Open && now < open_until_ ? open_until_ - now : Clock::duration::zero();
  }

 private:
  Settings s_;
  std::deque<bool> recent_;  // true = failure
  State state_ = State::Closed;
  Clock::time_point open_until_{};
  std::chrono::seconds cool_down_;
  bool probe_in_flight_ = false;
};

}  // namespace sb
