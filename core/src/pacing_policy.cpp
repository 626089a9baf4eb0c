#include "switchboard/core/pacing_policy.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"

namespace sb {
namespace {

using json = nlohmann::json;

// Every integer key with its range (the same as the config keys' ranges) and where it lives.
struct IntKey {
  const char* name;
  int PacingPolicy::*field;
  int min, max;
};
constexpr IntKey kIntKeys[] = {
    {"min_gap_ms", &PacingPolicy::min_gap_ms, 0, 86400000},
    {"jitter_ms", &PacingPolicy::jitter_ms, 0, 3600000},
    {"per_minute", &PacingPolicy::per_minute, 0, 1000},
    {"per_hour", &PacingPolicy::per_hour, 0, 10000},
    {"number_per_s", &PacingPolicy::number_per_s, 0, 10000},
    {"pair_gap_ms", &PacingPolicy::pair_gap_ms, 0, 86400000},
    {"throttle_backoff_ms", &PacingPolicy::throttle_backoff_ms, 0, 3600000},
    {"cool_down_s", &PacingPolicy::cool_down_s, 0, 30 * 86400},
};
constexpr int kMaxCap = 10000000;
constexpr std::size_t kMaxWarmupDays = 365;

std::string known_keys() {
  std::string out;
  for (const auto& k : kIntKeys) out += std::string(out.empty() ? "" : ", ") + k.name;
  return out + ", warmup_daily_caps";
}

std::vector<int> caps_of(const json& v) {
  const std::string field = "pacing.warmup_daily_caps";
  if (!v.is_array()) throw InvalidInput("pacing.warmup_daily_caps must be an array of daily caps, e.g. [20, 40, 80]", field);
  if (v.size() > kMaxWarmupDays)
    throw InvalidInput("pacing.warmup_daily_caps has " + std::to_string(v.size()) + " days: at most " +
                           std::to_string(kMaxWarmupDays),
                       field);
  std::vector<int> out;
  for (const auto& c : v) {
    if (!c.is_number_integer() || c.get<long long>() < 1 || c.get<long long>() > kMaxCap)
      throw InvalidInput("pacing.warmup_daily_caps: every day's cap must be an integer from 1 to " + std::to_string(kMaxCap) +
                             ", got " + c.dump(),
                         field);
    out.push_back(c.get<int>());
  }
  return out;
}

}  // namespace

PacingPolicy PacingPolicy::from_config(const PacingConfig& c) {
  PacingPolicy p;
  p.min_gap_ms = c.min_gap_ms;
  p.jitter_ms = c.jitter_ms;
  p.per_minute = c.per_minute;
  p.per_hour = c.per_hour;
  p.warmup_daily_caps = parse_caps(c.warmup_daily_caps);
  p.number_per_s = c.cloud_api_number_per_s;
  p.pair_gap_ms = c.cloud_api_pair_gap_ms;
  p.throttle_backoff_ms = c.throttle_backoff_ms;
  p.cool_down_s = c.pause_cool_down_s;
  return p;
}

void PacingPolicy::validate(const json& overrides) {
  if (overrides.is_null()) return;
  if (!overrides.is_object()) throw InvalidInput("pacing must be an object (" + known_keys() + ")", "pacing");
  for (const auto& [key, value] : overrides.items()) {
    if (value.is_null()) continue;
    if (key == "warmup_daily_caps") {
      caps_of(value);
      continue;
    }
    // clang 14 cannot capture a structured binding in a lambda: compare through a plain reference.
    const std::string& name = key;
    const auto* k = std::find_if(std::begin(kIntKeys), std::end(kIntKeys), [&](const IntKey& i) { return name == i.name; });
    if (k == std::end(kIntKeys))
      throw InvalidInput("unknown pacing key '" + key + "' (known: " + known_keys() + ")", "pacing." + key);
    if (!value.is_number_integer() || value.get<long long>() < k->min || value.get<long long>() > k->max)
      throw InvalidInput("pacing." + key + " must be an integer from " + std::to_string(k->min) + " to " +
                             std::to_string(k->max) + ", got " + value.dump(),
                         "pacing." + key);
  }
}

PacingPolicy PacingPolicy::merged(const json& overrides) const {
  validate(overrides);
  PacingPolicy p = *this;
  if (overrides.is_null()) return p;
  for (const auto& k : kIntKeys)
    if (auto it = overrides.find(k.name); it != overrides.end() && !it->is_null()) p.*(k.field) = it->get<int>();
  if (auto it = overrides.find("warmup_daily_caps"); it != overrides.end() && !it->is_null()) p.warmup_daily_caps = caps_of(*it);
  return p;
}

bool PacingPolicy::limits_sends(const std::string& provider) const {
  if (min_gap_ms > 0 || jitter_ms > 0 || per_minute > 0 || per_hour > 0 || !warmup_daily_caps.empty()) return true;
  return provider == "cloud_api" && (number_per_s > 0 || pair_gap_ms > 0);
}

json PacingPolicy::to_json() const {
  json out = json::object();
  for (const auto& k : kIntKeys) out[k.name] = this->*(k.field);
  out["warmup_daily_caps"] = warmup_daily_caps;
  return out;
}

std::vector<int> PacingPolicy::parse_caps(const std::string& text) {
  json caps = json::array();
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty() && text.find_first_not_of(" \t") == std::string::npos) continue;
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size())
      throw InvalidInput("'" + text + "' is not a comma-separated list of daily caps (e.g. \"20,40,80\")", "pacing.warmup_daily_caps");
    caps.push_back(v);
  }
  return caps_of(caps);
}

}  // namespace sb
