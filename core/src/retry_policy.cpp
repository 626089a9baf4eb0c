#include "switchboard/core/retry_policy.hpp"

#include <algorithm>
#include <cmath>

#include "switchboard/core/errors.hpp"

namespace sb {

bool is_retryable(const std::exception& e) {
  if (const auto* err = dynamic_cast<const Error*>(&e)) return err->retryable();
  return false;
}

std::chrono::milliseconds RetryPolicy::delay(int attempt, std::mt19937_64& rng) const {
  const double base = static_cast<double>(o_.initial.count()) * std::pow(o_.multiplier, std::max(0, attempt - 1));
  const double capped = std::min(base, static_cast<double>(o_.max.count()));
  std::uniform_real_distribution<double> factor(1.0 - o_.jitter, 1.0 + o_.jitter);
  const double jittered = o_.jitter > 0 ? capped * factor(rng) : capped;
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, jittered)));
}

RetryPolicy::Decision RetryPolicy::after_retryable(const std::string& why, int attempt, std::mt19937_64& rng) const {
  if (o_.max_attempts > 0 && attempt >= o_.max_attempts)
    return {false, {}, "gave up after " + std::to_string(attempt) + " attempts: " + why};
  return {true, delay(attempt, rng), {}};
}

RetryPolicy::Decision RetryPolicy::after(const std::exception& error, int attempt, std::mt19937_64& rng) const {
  if (!is_retryable(error)) return {false, {}, error.what()};
  return after_retryable(error.what(), attempt, rng);
}

RetryPolicy::Decision RetryPolicy::after(std::exception_ptr error, int attempt, std::mt19937_64& rng) const {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return after(e, attempt, rng);
  } catch (...) {
    return {false, {}, "unknown exception"};
  }
}

void Stopper::request_stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

bool Stopper::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stop_.load(); });
  return !stop_.load();
}

}  // namespace sb
