// Quotas and backpressure at intake, over real HTTP: two intake replicas share a tenant's quota
// through Redis (429 + Retry-After + RateLimit-Policy / RateLimit, IETF httpapi draft-12 syntax),
// per-tenant overrides from PostgreSQL, and lane lag over backpressure.max_lag → 503.
#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "intake_api.hpp"
#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/pg.hpp"

using nlohmann::json;
using sbtest::TestStack;

namespace {

void set_quota(const sb::Config& config, const std::string& tenant_id, std::optional<int> rps, std::optional<int> per_day) {
  sb::pg::Pool pool(config.postgres);
  pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO tenant_quotas (tenant_id, requests_per_s, messages_per_day) VALUES ($1, $2, $3)", tenant_id, rps, per_day);
    tx.commit();
  });
}

sb::Config on_port(sb::Config c) {
  c.intake.listen = "127.0.0.1:" + std::to_string(sbtest::free_port());
  return c;
}

int port_of(const sb::Config& c) { return std::stoi(c.intake.listen.substr(c.intake.listen.rfind(':') + 1)); }

// Waits for the start of the next wall-clock second (Redis runs on this host: its clock), so a
// burst of requests falls in one quota window.
void at_next_second() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto into = std::chrono::duration_cast<std::chrono::milliseconds>(now).count() % 1000;
  std::this_thread::sleep_for(std::chrono::milliseconds(1000 - into + 20));
}

const std::string send_body = json{{"to", "+15551234567"}, {"text", "hi"}}.dump();

}  // namespace

TEST_CASE("quotas: two intake replicas share a tenant's requests/s and messages/day through Redis, with RateLimit headers",
          "[integration][quotas]") {
  TestStack stack("quotas", 3);
  auto fast = stack.create_tenant("fast");
  auto daily = stack.create_tenant("daily");
  auto free_tenant = stack.create_tenant("free");
  set_quota(stack.config, fast.id, 10, std::nullopt);  // 10 requests/s, messages: the default (unlimited)
  set_quota(stack.config, daily.id, std::nullopt, 5);  // 5 messages a day
  const auto a_config = on_port(stack.config), b_config = on_port(stack.config);
  sbtest::InProcessIntake a(a_config), b(b_config);
  httplib::Client ha("127.0.0.1", port_of(a_config)), hb("127.0.0.1", port_of(b_config));
  ha.set_keep_alive(true);
  hb.set_keep_alive(true);

  SECTION("requests per second: 30 requests in one second across both replicas, exactly 10 pass") {
    at_next_second();
    int passed = 0, refused = 0;
    std::set<int> refused_by;
    std::set<std::string> remaining;  // RateLimit of the answers that passed: the draft's header on non-429s too
    httplib::Headers last_refusal;
    for (int i = 0; i < 30; ++i) {
      auto& http = i % 2 ? hb : ha;
      auto r = http.Get(("/v1/messages/" + sb::new_uuid_v7()).c_str(), sbtest::bearer(fast.api_key));
      REQUIRE(r);
      if (r->status == 404) {
        ++passed;
        CHECK(r->get_header_value("RateLimit-Policy") == "\"requests\";q=10;w=1");
        remaining.insert(r->get_header_value("RateLimit"));
      } else {
        REQUIRE(r->status == 429);
        ++refused;
        refused_by.insert(i % 2);
        last_refusal = r->headers;
        CHECK(json::parse(r->body)["error"].get<std::string>().find("requests-per-second") != std::string::npos);
      }
    }
    CHECK(passed == 10);  // one shared window: a per-replica count would have let 20 through
    CHECK(refused == 20);
    CHECK(refused_by.size() == 2);  // both replicas refuse
    std::set<std::string> expected;  // each pass used one of the shared window's 10: 9 left … 0 left
    for (int left = 0; left < 10; ++left) expected.insert("\"requests\";r=" + std::to_string(left) + ";t=1");
    CHECK(remaining == expected);
    auto header = [&](const char* name) {
      auto it = last_refusal.find(name);
      return it == last_refusal.end() ? std::string() : it->second;
    };
    CHECK(header("Retry-After") == "1");
    CHECK(header("RateLimit-Policy") == "\"requests\";q=10;w=1");
    CHECK(header("RateLimit") == "\"requests\";r=0;t=1");
    // The next second is a new window.
    at_next_second();
    auto again = ha.Get(("/v1/messages/" + sb::new_uuid_v7()).c_str(), sbtest::bearer(fast.api_key));
    REQUIRE(again);
    CHECK(again->status == 404);
  }

  SECTION("messages per day: 5 sends pass over both replicas, the 6th is 429 until the UTC day ends") {
    for (int i = 0; i < 5; ++i) {
      auto ok = (i % 2 ? hb : ha).Post("/v1/sessions/main/messages", sbtest::bearer(daily.api_key), send_body, "application/json");
      REQUIRE(ok);
      CHECK(ok->status == 202);
      // The accepted send says what is left of the day (the async send path carries it too).
      CHECK(ok->get_header_value("RateLimit-Policy") == "\"messages\";q=5;w=86400");
      CHECK(std::regex_match(ok->get_header_value("RateLimit"),
                             std::regex("\"messages\";r=" + std::to_string(4 - i) + ";t=[0-9]+")));
    }
    auto r = hb.Post("/v1/sessions/main/messages", sbtest::bearer(daily.api_key), send_body, "application/json");
    REQUIRE(r);
    CHECK(r->status == 429);
    const int retry_after = std::stoi(r->get_header_value("Retry-After"));
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const int to_midnight = static_cast<int>(86400 - secs % 86400);
    CHECK(std::abs(retry_after - to_midnight) <= 2);
    CHECK(r->get_header_value("RateLimit-Policy") == "\"messages\";q=5;w=86400");
    CHECK(std::regex_match(r->get_header_value("RateLimit"), std::regex(R"("messages";r=0;t=[0-9]+)")));
    CHECK(json::parse(r->body)["error"].get<std::string>().find("messages-per-day") != std::string::npos);
    // Reading is not sending: still allowed (no requests/s limit for this tenant).
    CHECK(sbtest::call(ha, "GET", "/v1/messages/" + sb::new_uuid_v7(), daily.api_key).status == 404);
  }

  SECTION("a tenant without a quota is never limited and gets no RateLimit headers") {
    for (int i = 0; i < 30; ++i) {
      auto r = (i % 2 ? hb : ha).Get(("/v1/messages/" + sb::new_uuid_v7()).c_str(), sbtest::bearer(free_tenant.api_key));
      REQUIRE(r);
      CHECK(r->status == 404);
      CHECK(!r->has_header("RateLimit"));
    }
  }
}

TEST_CASE("backpressure: a lane lagging past backpressure.max_lag gets 503 + Retry-After, other lanes pass, and it clears",
          "[integration][quotas][backpressure]") {
  TestStack stack("backpressure", 3);
  auto tenant = stack.create_tenant("bp");
  const int sim_port = sbtest::free_port();
  stack.config.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
  stack.config.provider.url = "http://127.0.0.1:" + std::to_string(sim_port);
  stack.config.backpressure.max_lag = 5;
  stack.config.backpressure.check_interval_ms = 200;
  stack.config.backpressure.retry_after_s = 3;
  stack.config.worker.commit_interval_ms = 200;
  stack.write_config();
  const auto config = on_port(stack.config);
  sbtest::InProcessIntake intake(config);
  httplib::Client http("127.0.0.1", port_of(config));
  const std::string low = json{{"to", "+15551234567"}, {"text", "hi"}, {"priority", "low"}}.dump();
  const std::string high = json{{"to", "+15551234567"}, {"text", "hi"}, {"priority", "high"}}.dump();

  // No worker on the low lane yet: its records pile up, accepted until the lag (checked every
  // 200 ms) passes max_lag. (Ten 202s in a row were required before, which raced that check.)
  int accepted = 0;
  std::string retry_after, refusal;
  REQUIRE(sbtest::eventually([&] {
    auto r = http.Post("/v1/sessions/main/messages", sbtest::bearer(tenant.api_key), low, "application/json");
    REQUIRE(r);
    if (r->status == 202) ++accepted;
    if (r->status != 503) return false;
    retry_after = r->get_header_value("Retry-After");
    refusal = r->body;
    return true;
  }, 15000, 100));
  CHECK(accepted > 5);  // refused only once more than max_lag records waited
  CHECK(retry_after == "3");
  CHECK(json::parse(refusal)["error"].get<std::string>().find("lane 'low'") != std::string::npos);
  CHECK(sbtest::call(http, "POST", "/v1/sessions/main/messages", tenant.api_key, high).status == 202);  // another lane
  // Intake's /metrics shows the lag per partition and the refusing lane.
  auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("sb_intake_backpressure{lane=\"low\"} 1") != std::string::npos);
  CHECK(std::regex_search(metrics->body, std::regex(R"(sb_consumer_lag\{group="[^"]*sb-workers-low",topic="[^"]*sb.commands.low",partition="[0-9]+"\} [1-9])")));

  // A low-lane worker catches up: the lane is accepted again.
  auto sim = stack.spawn("simulator", {"simulator"});
  auto worker = stack.spawn("worker-low", {"worker", "--lane", "low"});
  CHECK(sbtest::eventually([&] {
    auto r = http.Post("/v1/sessions/main/messages", sbtest::bearer(tenant.api_key), low, "application/json");
    return r && r->status == 202;
  }, 30000, 200));
}
