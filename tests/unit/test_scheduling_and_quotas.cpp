// The pure parts of scheduled sends and quotas: send_at parsing and range checks, the RFC 3339
// → Unix time conversion, the RateLimit header values, and their config keys.
#include <catch2/catch.hpp>

#include "switchboard/core/config.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/producers/request_parsing.hpp"
#include "switchboard/producers/tenant_quotas.hpp"

using sb::RequestRejected;

TEST_CASE("send_at: RFC 3339 with offsets and fractions becomes the right Unix milliseconds", "[unit][scheduled]") {
  CHECK(sb::rfc3339_unix_ms("1970-01-01T00:00:00Z") == 0);
  CHECK(sb::rfc3339_unix_ms("2026-12-01T15:30:00Z") == 1796139000000LL);
  CHECK(sb::rfc3339_unix_ms("2026-12-01T17:30:00+02:00") == 1796139000000LL);
  CHECK(sb::rfc3339_unix_ms("2026-12-01T10:00:00-05:30") == 1796139000000LL);
  CHECK(sb::rfc3339_unix_ms("2026-12-01T15:30:00.5Z") == 1796139000500LL);
  CHECK(sb::rfc3339_unix_ms("2026-12-01T15:30:00.123456Z") == 1796139000123LL);
  CHECK(sb::rfc3339_unix_ms("2024-02-29T00:00:00Z") == 1709164800000LL);  // a leap day
  // Round trip with the formatter intake and workers use.
  const auto now = sb::Clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  CHECK(sb::rfc3339_unix_ms(sb::to_rfc3339(now)) == ms);
}

TEST_CASE("send_at: the request field is checked for shape and range, the field named", "[unit][scheduled]") {
  sb::SchemaSet schemas(SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  auto r = sb::parse_send_request(R"({"to":"+15551234567","text":"hi","send_at":"2026-12-01T17:30:00+02:00"})", std::nullopt, schemas);
  REQUIRE(r.send_at);
  CHECK(*r.send_at == "2026-12-01T17:30:00+02:00");
  CHECK(r.send_at_unix_ms == 1796139000000LL);
  CHECK(!sb::parse_send_request(R"({"to":"+15551234567","text":"hi"})", std::nullopt, schemas).send_at);
  for (const char* bad : {R"({"to":"+15551234567","text":"hi","send_at":"tomorrow"})",
                          R"({"to":"+15551234567","text":"hi","send_at":"2026-02-30T10:00:00Z"})",
                          R"({"to":"+15551234567","text":"hi","send_at":"2026-12-01T25:00:00Z"})",
                          R"({"to":"+15551234567","text":"hi","send_at":1796139000})"}) {
    try {
      sb::parse_send_request(bad, std::nullopt, schemas);
      FAIL("accepted " << bad);
    } catch (const RequestRejected& e) {
      CHECK(e.status() == 422);
      CHECK(e.field() == "send_at");
    }
  }
}

TEST_CASE("quotas: RateLimit-Policy and RateLimit values follow the httpapi draft's structured-field syntax", "[unit][quotas]") {
  auto both = sb::quota_headers({10, 1000}, 3, 1, 120, 3600);
  CHECK(both.policy_header == "\"requests\";q=10;w=1, \"messages\";q=1000;w=86400");
  CHECK(both.ratelimit_header == "\"requests\";r=3;t=1, \"messages\";r=120;t=3600");
  auto day_only = sb::quota_headers({0, 5}, 0, 1, 0, 42);
  CHECK(day_only.policy_header == "\"messages\";q=5;w=86400");
  CHECK(day_only.ratelimit_header == "\"messages\";r=0;t=42");
  auto none = sb::quota_headers({0, 0}, 0, 0, 0, 0);
  CHECK(none.policy_header.empty());
  CHECK(none.ratelimit_header.empty());
}

TEST_CASE("config: scheduler, quotas and backpressure keys with their defaults and limits", "[unit][config]") {
  auto c = sb::parse_config("scheduler:\n  poll_interval_ms: 50\nquotas:\n  requests_per_s: 100\n  messages_per_day: 10000\n"
                            "backpressure:\n  max_lag: 5000\n",
                            "test.yaml", [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
  CHECK(c.scheduler.enabled);
  CHECK(c.scheduler.poll_interval_ms == 50);
  CHECK(c.scheduler.batch_max == 500);
  CHECK(c.quotas.requests_per_s == 100);
  CHECK(c.quotas.messages_per_day == 10000);
  CHECK(c.backpressure.max_lag == 5000);
  CHECK(c.backpressure.check_interval_ms == 1000);
  CHECK_THROWS_AS(sb::parse_config("quotas:\n  requests_per_s: -1\n", "t", [](const std::string&) -> std::optional<std::string> { return std::nullopt; }),
                  sb::ConfigError);
  CHECK_THROWS_AS(sb::parse_config("scheduler:\n  every: 5\n", "t", [](const std::string&) -> std::optional<std::string> { return std::nullopt; }),
                  sb::ConfigError);
}
