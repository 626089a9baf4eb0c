#pragma once
// The one retry / back-off / stop / poison policy every loop uses (workers, publishers, the
// webhook dispatcher). The rule:
//   - an error that says retryable() (a dependency is down or slow) is retried with capped,
//     jittered exponential back-off — as long as the caller is not stopping, and, when the
//     caller caps attempts (max_attempts > 0), until that many attempts were made;
//   - anything else is poison: retrying the same input cannot help, so the caller gives up at
//     once and moves the item aside (dead-letter, message.failed) instead of wedging on it.
// Pure and cheap: time and randomness are the caller's, so the rule is unit-tested exactly.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <random>
#include <string>

namespace sb {

class RetryPolicy {
 public:
  struct Options {
    std::chrono::milliseconds initial{100};
    std::chrono::milliseconds max{5000};
    double multiplier = 2.0;
    double jitter = 0.2;   // each delay is scaled by a uniform factor in [1 - jitter, 1 + jitter]
    int max_attempts = 0;  // retryable errors: give up after this many attempts (0 = never)
  };
  struct Decision {
    bool retry = false;
    std::chrono::milliseconds delay{0};  // when retry
    std::string why;                     // when giving up: for the log / dead letter / message.failed
  };

  RetryPolicy() = default;
  explicit RetryPolicy(Options o) : o_(o) {}

  // After failed attempt number `attempt` (1-based) with `error`.
  Decision after(const std::exception& error, int attempt, std::mt19937_64& rng) const;
  Decision after(std::exception_ptr error, int attempt, std::mt19937_64& rng) const;
  // Only the timing part, for failures that are not exceptions (a provider's 503).
  Decision after_retryable(const std::string& why, int attempt, std::mt19937_64& rng) const;
  std::chrono::milliseconds delay(int attempt, std::mt19937_64& rng) const;
  const Options& options() const { return o_; }

 private:
  Options o_;
};

// Whether an exception is worth retrying: our typed errors say so; anything else (a bug, a
// std::bad_alloc, a libpqxx data exception that escaped mapping) is not.
bool is_retryable(const std::exception& e);

// A stop flag whose waits wake up at once when stop is requested: back-off sleeps in loops
// must never delay a shutdown.
class Stopper {
 public:
  void request_stop();
  bool stopping() const { return stop_.load(); }
  // Sleeps for `d` or until stop; returns false when stopping.
  bool sleep_for(std::chrono::milliseconds d);

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace sb
