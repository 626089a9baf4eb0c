#include "switchboard/workers/webhooks/retry_schedule.hpp"

#include <algorithm>
#include <sstream>

#include "switchboard/core/errors.hpp"

namespace sb {

RetrySchedule::RetrySchedule(std::vector<Seconds> delays, double jitter) : delays_(std::move(delays)), jitter_(jitter) {
  if (delays_.empty()) throw ConfigError("webhook retry schedule is empty: give at least one delay, e.g. \"5s,5m\"");
  for (auto d : delays_)
    if (d.count() <= 0) throw ConfigError("webhook retry delays must be positive");
  if (jitter_ < 0 || jitter_ >= 1) throw ConfigError("webhook retry jitter must be in [0, 1), e.g. 0.2 for ±20 %");
}

RetrySchedule RetrySchedule::parse(const std::string& text, double jitter) {
  std::vector<Seconds> delays;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    std::size_t used = 0;
    long long n = -1;
    try {
      n = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    const std::string unit = used ? item.substr(used) : "";
    const long long scale = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
    if (!used || scale == 0 || n <= 0)
      throw ConfigError("webhook retry schedule item '" + item + "' in \"" + text + "\": expected a positive number with s, m, h or d");
    delays.emplace_back(n * scale);
  }
  return RetrySchedule(std::move(delays), jitter);
}

std::optional<RetrySchedule::Seconds> RetrySchedule::next_delay(int failed_attempts, std::optional<Seconds> retry_after,
                                                                std::mt19937_64& rng) const {
  if (failed_attempts < 1 || failed_attempts > static_cast<int>(delays_.size())) return std::nullopt;
  if (retry_after) {
    const auto longest = *std::max_element(delays_.begin(), delays_.end());
    return std::clamp(*retry_after, Seconds(1), longest);
  }
  const auto base = static_cast<double>(delays_[failed_attempts - 1].count());
  std::uniform_real_distribution<double> spread(1.0 - jitter_, 1.0 + jitter_);
  return Seconds(std::max<long long>(1, static_cast<long long>(base * spread(rng) + 0.5)));
}

}  // namespace sb
