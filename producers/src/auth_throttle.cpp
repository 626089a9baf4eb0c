#include "switchboard/producers/auth_throttle.hpp"

namespace sb {

namespace {
constexpr std::size_t kMaxSources = 100000;
}

int AuthThrottle::blocked_for_s(const std::string& source, Clock::time_point now) {
  if (options_.limit <= 0) return 0;
  std::lock_guard lock(mu_);
  auto it = sources_.find(source);
  if (it == sources_.end() || it->second.blocked_until <= now) return 0;
  ++it->second.refused;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->second.blocked_until - now).count();
  return static_cast<int>((left + 999) / 1000);
}

bool AuthThrottle::failed(const std::string& source, Clock::time_point now) {
  if (options_.limit <= 0) return false;
  std::lock_guard lock(mu_);
  if (sources_.size() >= kMaxSources && !sources_.count(source)) forget_idle(now);
  auto& s = sources_[source];
  if (s.blocked_until > now) return false;  // already blocked (and reported)
  if (s.failures == 0 || now - s.window_start >= std::chrono::seconds(options_.window_s)) {
    s.window_start = now;
    s.failures = 0;
  }
  if (++s.failures <= options_.limit) return false;
  s.blocked_until = now + std::chrono::seconds(options_.block_s);
  s.failures = 0;
  s.refused = 0;
  return true;
}

uint64_t AuthThrottle::refused(const std::string& source) {
  std::lock_guard lock(mu_);
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.refused;
}

void AuthThrottle::forget_idle(Clock::time_point now) {
  const auto window = std::chrono::seconds(options_.window_s);
  for (auto it = sources_.begin(); it != sources_.end();)
    if (it->second.blocked_until <= now && now - it->second.window_start >= window) it = sources_.erase(it);
    else ++it;
  if (sources_.size() >= kMaxSources) {
    // Sprayed from more addresses than we keep: forget the unblocked ones (blocks stay).
    for (auto it = sources_.begin(); it != sources_.end();)
      if (it->second.blocked_until <= now) it = sources_.erase(it);
      else ++it;
  }
}

}  // namespace sb
