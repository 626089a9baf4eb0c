#pragma once
// A small thread-safe TTL cache of strings: intake's API key hash → tenant and "tenant/session"
// → exists, and the provider callbacks' engine session → owner. Bounded: past 100,000 entries it
// starts over (a client spraying unknown keys must not grow it without end).
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace sb {

class TtlCache {
 public:
  explicit TtlCache(int ttl_ms) : ttl_(std::chrono::milliseconds(ttl_ms)) {}
  std::optional<std::string> get(const std::string& k) {
    std::lock_guard lock(mu_);
    auto it = map_.find(k);
    if (it == map_.end() || it->second.second < Clock::now()) return std::nullopt;
    return it->second.first;
  }
  void put(const std::string& k, const std::string& v) {
    std::lock_guard lock(mu_);
    if (map_.size() > 100000) map_.clear();
    map_[k] = {v, Clock::now() + ttl_};
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<std::string, Clock::time_point>> map_;
};

}  // namespace sb
