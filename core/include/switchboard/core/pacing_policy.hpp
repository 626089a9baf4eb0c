#pragma once
// How fast one session may send (anti-ban pacing) and what happens on a throttle or ban signal.
// The defaults come from config (pacing.*); a tenant's `pacing` and then a session's `pacing`
// (JSON objects stored in PostgreSQL, set through the API) override them key by key — a key
// absent or null inherits. RedisPacer enforces the send limits for every replica and lane at
// once; the session lifecycle uses cool_down_s when it pauses a session.
//
//   min_gap_ms + jitter_ms   gap between two sends: min_gap_ms plus a random 0..jitter_ms each time
//   per_minute, per_hour     at most that many sends in any sliding 60 s / 3600 s (0: no cap)
//   warmup_daily_caps        [20, 40, 80]: at most 20 sends in the first 24 h after the session
//                            first became WORKING, 40 in the next 24 h, …; no cap after the list
//   number_per_s             Cloud API: sends per phone number per second (Meta: 80)
//   pair_gap_ms              Cloud API: gap between two sends to the same recipient (Meta ~6 s)
//   throttle_backoff_ms      after 429 / Graph 130429 the session's sends wait at least this
//   cool_down_s              a session paused on a ban signal resumes after this (0: by API only)
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sb {

struct PacingConfig;

struct PacingPolicy {
  int min_gap_ms = 0;
  int jitter_ms = 0;
  int per_minute = 0;
  int per_hour = 0;
  std::vector<int> warmup_daily_caps;
  int number_per_s = 80;
  int pair_gap_ms = 0;
  int throttle_backoff_ms = 1000;
  int cool_down_s = 900;

  static PacingPolicy from_config(const PacingConfig& config);
  // This policy with `overrides` applied (an object of the keys above; null = inherit). Throws
  // InvalidInput naming the key (field "pacing.<key>") and the allowed range.
  PacingPolicy merged(const nlohmann::json& overrides) const;
  // Whether a send of a session of `provider` has anything to wait for (else no Redis call).
  bool limits_sends(const std::string& provider) const;
  nlohmann::json to_json() const;

  // Throws InvalidInput unless `overrides` is a valid override object (see merged()).
  static void validate(const nlohmann::json& overrides);
  // "20,40,80" → {20, 40, 80}; throws InvalidInput for anything else ("" → {}).
  static std::vector<int> parse_caps(const std::string& text);
};

}  // namespace sb
