// Pacing policy: config defaults, override validation (what the API and the CLI refuse, and
// how), and the precedence config ← tenant ← session.
#include <catch2/catch.hpp>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/pacing_policy.hpp"
#include "switchboard/core/pacing_store.hpp"

using nlohmann::json;

namespace {
std::optional<std::string> no_env(const std::string&) { return std::nullopt; }
std::string config_error(const std::string& yaml) {
  try {
    sb::parse_config(yaml, "test.yaml", &no_env);
  } catch (const sb::ConfigError& e) {
    return e.what();
  }
  return "";
}
// The field InvalidInput names for `overrides`, "" when they are valid.
std::string refused_field(const json& overrides) {
  try {
    sb::PacingPolicy::validate(overrides);
  } catch (const sb::InvalidInput& e) {
    return e.field().empty() ? "<none>" : e.field();
  }
  return "";
}
}  // namespace

TEST_CASE("pacing: config defaults parse, and bad pacing keys are refused naming the key", "[unit][pacing][config]") {
  auto c = sb::parse_config(R"(
pacing:
  min_gap_ms: 3000
  jitter_ms: 2000
  per_minute: 12
  per_hour: 300
  warmup_daily_caps: "20, 40,80"
  cloud_api_number_per_s: 40
  cloud_api_pair_gap_ms: 6000
  pause_cool_down_s: 60
)", "test.yaml", &no_env);
  const auto p = sb::PacingPolicy::from_config(c.pacing);
  CHECK(p.min_gap_ms == 3000);
  CHECK(p.jitter_ms == 2000);
  CHECK(p.per_minute == 12);
  CHECK(p.per_hour == 300);
  CHECK(p.warmup_daily_caps == std::vector<int>{20, 40, 80});
  CHECK(p.number_per_s == 40);
  CHECK(p.pair_gap_ms == 6000);
  CHECK(p.cool_down_s == 60);
  // Defaults: nothing limited but the Cloud API number's throughput (Meta's 80/s).
  const auto d = sb::PacingPolicy::from_config(sb::Config{}.pacing);
  CHECK(d.number_per_s == 80);
  CHECK(d.warmup_daily_caps.empty());
  CHECK_FALSE(d.limits_sends("engine"));
  CHECK_FALSE(d.limits_sends("simulator"));
  CHECK(d.limits_sends("cloud_api"));

  CHECK_THAT(config_error("pacing:\n  warmup_daily_caps: \"20,forty\"\n"),
             Catch::Contains("pacing.warmup_daily_caps") && Catch::Contains("20,40,80"));
  CHECK_THAT(config_error("pacing:\n  warmup_daily_caps: \"20,0\"\n"), Catch::Contains("from 1 to"));
  CHECK_THAT(config_error("pacing:\n  per_minute: 5000\n"), Catch::Contains("pacing.per_minute") && Catch::Contains("0 to 1000"));
  CHECK_THAT(config_error("pacing:\n  min_gap_ms: -1\n"), Catch::Contains("pacing.min_gap_ms"));
  CHECK_THAT(config_error("pacing:\n  gap_ms: 10\n"), Catch::Contains("unknown config key 'pacing.gap_ms'"));
  CHECK(config_error("pacing:\n  warmup_daily_caps: \"\"\n").empty());
}

TEST_CASE("pacing: overrides are validated key by key, null inherits", "[unit][pacing]") {
  CHECK(refused_field(json::object()).empty());
  CHECK(refused_field(nullptr).empty());
  CHECK(refused_field({{"min_gap_ms", 2500}, {"jitter_ms", nullptr}, {"warmup_daily_caps", {10, 20}}}).empty());
  CHECK(refused_field(json::array()) == "pacing");
  CHECK(refused_field({{"gap", 5}}) == "pacing.gap");
  CHECK(refused_field({{"min_gap_ms", "250"}}) == "pacing.min_gap_ms");
  CHECK(refused_field({{"min_gap_ms", 2.5}}) == "pacing.min_gap_ms");
  CHECK(refused_field({{"per_minute", 1001}}) == "pacing.per_minute");
  CHECK(refused_field({{"cool_down_s", -1}}) == "pacing.cool_down_s");
  CHECK(refused_field({{"warmup_daily_caps", {10, 0}}}) == "pacing.warmup_daily_caps");
  CHECK(refused_field({{"warmup_daily_caps", "10,20"}}) == "pacing.warmup_daily_caps");
  CHECK(refused_field({{"warmup_daily_caps", json(std::vector<int>(366, 5))}}) == "pacing.warmup_daily_caps");
  try {
    sb::PacingPolicy::validate({{"per_hour", 99999}});
    FAIL("accepted");
  } catch (const sb::InvalidInput& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("pacing.per_hour must be an integer from 0 to 10000, got 99999"));
  }
}

TEST_CASE("pacing: a session's overrides win over its tenant's, which win over the config", "[unit][pacing]") {
  sb::PacingPolicy defaults;
  defaults.min_gap_ms = 1000;
  defaults.per_hour = 100;
  defaults.cool_down_s = 900;
  sb::SessionPacing s;
  s.provider = "engine";
  s.tenant_overrides = {{"min_gap_ms", 3000}, {"jitter_ms", 500}, {"per_hour", 50}};
  s.session_overrides = {{"min_gap_ms", 200}, {"per_hour", nullptr}, {"warmup_daily_caps", {5, 10}}};
  auto p = s.effective(defaults);
  CHECK(p.min_gap_ms == 200);                                 // session
  CHECK(p.jitter_ms == 500);                                  // tenant
  CHECK(p.per_hour == 50);                                    // session null: the tenant's
  CHECK(p.cool_down_s == 900);                                // config
  CHECK(p.warmup_daily_caps == std::vector<int>{5, 10});
  CHECK(p.to_json()["min_gap_ms"] == 200);
  CHECK(sb::PacingPolicy().merged(p.to_json()).to_json() == p.to_json());  // what GET shows can be PATCHed back
  // A stored override that no longer validates is ignored as a whole; the rest still apply.
  s.session_overrides = {{"min_gap_ms", -5}};
  p = s.effective(defaults);
  CHECK(p.min_gap_ms == 3000);
  CHECK(p.per_hour == 50);
}
