#pragma once
// Brute-force guard for API keys: a source address that presented more than `limit` unknown
// keys within `window_s` is refused (429) for `block_s` without a database lookup. Only keys
// not already known good are refused, so a tenant's working key keeps working from the same
// address (a NAT shared with a guesser) and costs nothing extra: one map lookup under a mutex.
// Each block is reported once, by failed() returning true, not once per attempt.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace sb {

class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    int limit = 20;     // unknown keys per window before blocking; 0 = never block
    int window_s = 60;
    int block_s = 300;
  };
  explicit AuthThrottle(Options options) : options_(options) {}

  // Seconds until `source` may present unknown keys again (rounded up); 0 when it may now.
  int blocked_for_s(const std::string& source, Clock::time_point now = Clock::now());
  // Records an unknown key from `source`. True exactly when this failure starts a block: the
  // caller logs it then (one line per block).
  bool failed(const std::string& source, Clock::time_point now = Clock::now());
  // Attempts refused during the block that is running or ended last for `source` (for tests and logs).
  uint64_t refused(const std::string& source);
  const Options& options() const { return options_; }

 private:
  struct State {
    Clock::time_point window_start;
    int failures = 0;
    Clock::time_point blocked_until;  // epoch (default) = never blocked
    uint64_t refused = 0;
  };
  void forget_idle(Clock::time_point now);  // keeps the map bounded under address spraying

  Options options_;
  std::mutex mu_;
  std::unordered_map<std::string, State> sources_;
};

}  // namespace sb
