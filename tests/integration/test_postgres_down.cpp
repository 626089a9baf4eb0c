// PostgreSQL down under intake, as a separate process (a crash must not take the test with it).
// Found by the chaos harness: a send whose API key or session had left intake's cache was
// looked up on the blocking pool outside any handler, so PostgreSQL's "shutting down" escaped
// as an uncaught sb::Unavailable and terminated intake.
#include <catch2/catch.hpp>
#include <httplib.h>

#include "stack.hpp"

TEST_CASE("intake: PostgreSQL unreachable while a key is looked up answers 503 and intake stays up",
          "[integration][intake][faults]") {
  sbtest::TestStack stack("pg-down-intake");
  const int port = sbtest::free_port(), closed = sbtest::free_port();
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(port);
  // Nothing listens there: every lookup fails with "cannot connect to PostgreSQL".
  stack.config.postgres.url = "postgresql://switchboard:switchboard@127.0.0.1:" + std::to_string(closed) + "/switchboard";
  stack.write_config();
  auto intake = stack.spawn("intake", {"intake"});
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(30, 0);
  REQUIRE(sbtest::eventually([&] { return static_cast<bool>(http.Get("/health")); }, 15000));
  const httplib::Headers key{{"Authorization", "Bearer sb_live_not_cached_" + std::to_string(closed)}};
  for (int i = 0; i < 3; ++i) {
    auto r = http.Post("/v1/sessions/main/messages", key, R"({"to":"+15551234567","text":"hi"})", "application/json");
    REQUIRE(r);  // no answer at all: intake died
    CHECK(r->status == 503);
    CHECK(!r->get_header_value("Retry-After").empty());
  }
  CHECK(intake.alive());
}
