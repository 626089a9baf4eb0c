// Security checks that stay in the suite: tenant isolation on every route, and brute force on
// API keys (rate-limited per source address, logged once, good keys unaffected). The scan for
// secrets in logs is tests/security/scan_logs (it runs after the integration tests).
#include <catch2/catch.hpp>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "intake_api.hpp"
#include "stack.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"

using nlohmann::json;
using sbtest::bearer;
using sbtest::call;

namespace {

// Everything tenant-visible that a request could change, as one comparable snapshot.
std::string snapshot(const sb::Config& config) {
  pqxx::connection c(config.postgres.url);
  pqxx::nontransaction tx(c);
  std::string out;
  for (const char* q : {"SELECT id::text, url, events::text, enabled::text, ordering, secret, coalesce(previous_secret, ''), "
                        "updated_at::text FROM webhook_endpoints ORDER BY id",
                        "SELECT id::text, tenant_id::text, session, status, updated_at::text FROM messages ORDER BY id",
                        "SELECT endpoint_id::text, event_id::text FROM webhook_deliveries ORDER BY id",
                        "SELECT count(*)::text FROM webhook_attempts", "SELECT count(*)::text FROM events"}) {
    for (const auto& row : tx.exec(q)) {
      for (const auto& f : row) out += (f.is_null() ? "∅" : f.c_str()) + std::string("|");
      out += "\n";
    }
    out += "--\n";
  }
  return out;
}

std::size_t count_lines(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

// The status a stream route answers with; the body (an endless stream on 200) is not read.
int stream_status(httplib::Client& http, const std::string& path, const httplib::Headers& headers = {}) {
  int status = 0;
  http.Get(path, headers, [&](const httplib::Response& r) {
    status = r.status;
    return false;  // stop here: a 200 is an event stream that never ends
  }, [](const char*, size_t) { return false; });
  return status;
}

}  // namespace

TEST_CASE("security: tenant B can neither see nor change tenant A's messages, endpoints, attempts or events",
          "[integration][security]") {
  sbtest::TestStack stack("tenant-isolation");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  auto a = stack.create_tenant("acme", {"main", "acme-only"});
  auto b = stack.create_tenant("globex", {"main"});
  sbtest::InProcessIntake api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());

  // A's objects: a message, an endpoint, an attempt on it, a stored event.
  auto sent = call(http, "POST", "/v1/sessions/main/messages", a.api_key, R"({"to":"+15551234567","text":"for acme"})");
  REQUIRE(sent.status == 202);
  const std::string message_id = sent.body["id"];
  auto created = call(http, "POST", "/v1/webhooks", a.api_key,
                      R"({"url":"http://127.0.0.1:9/acme-secret-path","events":["*"]})");
  REQUIRE(created.status == 201);
  const std::string endpoint_id = created.body["id"];
  sbtest::minted(created.body["secret"]);
  sb::pg::Pool pool(stack.config.postgres);
  const auto event_id = sb::new_uuid_v7();
  {
    sb::AttemptRecord at;
    at.endpoint_id = endpoint_id;
    at.tenant_id = a.id;
    at.event_id = event_id;
    at.event_type = "message.sent";
    at.attempt = 1;
    at.outcome = "succeeded";
    at.http_status = 200;
    at.latency_ms = 5;
    sb::WebhookDeliveryStore(pool).record_attempts({at});
    sb::StoredEvent ev;
    ev.id = event_id;
    ev.tenant_id = a.id;
    ev.type = "message.sent";
    ev.session = "main";
    ev.occurred_at = sb::now_rfc3339();
    ev.body = json({{"id", event_id}, {"type", "message.sent"}}).dump();
    sb::EventStore(pool).record({ev});
  }
  // A sees them all (so a 404 for B below is about B, not a broken route).
  REQUIRE(call(http, "GET", "/v1/messages/" + message_id, a.api_key).status == 200);
  REQUIRE(call(http, "GET", "/v1/webhooks/" + endpoint_id, a.api_key).status == 200);
  REQUIRE(call(http, "GET", "/v1/webhooks/" + endpoint_id + "/attempts", a.api_key).body["data"].size() == 1);
  const auto before = snapshot(stack.config);

  struct Probe {
    std::string method, path, body;
  };
  const std::vector<Probe> probes = {
      {"GET", "/v1/messages/" + message_id, ""},
      {"GET", "/v1/webhooks/" + endpoint_id, ""},
      {"PATCH", "/v1/webhooks/" + endpoint_id, R"({"enabled":false,"url":"http://127.0.0.1:9/globex"})"},
      {"PATCH", "/v1/webhooks/" + endpoint_id, R"({"rotate_secret":true})"},
      {"DELETE", "/v1/webhooks/" + endpoint_id, ""},
      {"GET", "/v1/webhooks/" + endpoint_id + "/attempts", ""},
      {"GET", "/v1/webhooks/" + endpoint_id + "/attempts?status=succeeded&limit=10", ""},
      {"POST", "/v1/webhooks/" + endpoint_id + "/replay", R"({"since":"2000-01-01T00:00:00Z"})"},
      {"POST", "/v1/events/" + event_id + "/redeliver", "{}"},
      {"POST", "/v1/sessions/acme-only/messages", R"({"to":"+15551234567","text":"from globex"})"},
  };
  for (const auto& p : probes) {
    INFO(p.method << " " << p.path);
    const auto r = call(http, p.method, p.path, b.api_key, p.body);
    CHECK(r.status == 404);  // not 403: B doesn't even learn that A's object exists
    const auto text = r.body.dump();
    for (const std::string& leak : {a.id, std::string("acme-secret-path"), std::string("for acme")})
      CHECK(text.find(leak) == std::string::npos);
  }
  // B's own views show none of A's.
  CHECK(call(http, "GET", "/v1/webhooks", b.api_key).body["data"].empty());
  CHECK(snapshot(stack.config) == before);  // and nothing changed
  // A's endpoint is still A's, unchanged and working.
  auto mine = call(http, "GET", "/v1/webhooks/" + endpoint_id, a.api_key);
  CHECK(mine.status == 200);
  CHECK(mine.body["enabled"] == true);
  CHECK(mine.body["url"] == "http://127.0.0.1:9/acme-secret-path");
}

TEST_CASE("security: repeated bad API keys from one address are refused for a while, logged once, good keys unaffected",
          "[integration][security]") {
  sbtest::TestStack stack("auth-brute-force");
  const int port = sbtest::free_port();
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(port);
  stack.config.intake.auth_failure_limit = 5;
  stack.config.intake.auth_failure_window_s = 60;
  stack.config.intake.auth_block_s = 3;
  stack.write_config();
  auto good = stack.create_tenant("acme");
  auto later = stack.create_tenant("globex");  // its key is first used during the block
  // In its own process, so its log file is this test's alone.
  auto intake = stack.spawn("intake", {"intake"});
  httplib::Client http("127.0.0.1", port);
  REQUIRE(sbtest::eventually([&] { return static_cast<bool>(http.Get("/health")); }, 15000));
  const std::string kSend = R"({"to":"+15551234567","text":"hi"})";

  REQUIRE(call(http, "POST", "/v1/sessions/main/messages", good.api_key, kSend).status == 202);  // known good from here on
  // The event stream answers 503 until its reader has found the end of sb.events.
  REQUIRE(sbtest::eventually([&] { return stream_status(http, "/v1/events/stream", bearer(good.api_key)) == 200; }, 30000, 250));
  std::vector<std::string> guesses;
  for (int i = 0; i < 40; ++i) guesses.push_back("sb_live_guess" + std::to_string(i) + sb::new_uuid_v7());
  // The first limit+1 guesses are looked up and refused (401); the block starts with the last.
  // Half of them come as the event stream's ?api_key= (what browsers use): the same throttle.
  for (int i = 0; i <= 2; ++i) CHECK(call(http, "GET", "/v1/webhooks", guesses[i]).status == 401);
  for (int i = 3; i <= 5; ++i) CHECK(stream_status(http, "/v1/events/stream?api_key=" + guesses[i]) == 401);
  CHECK(stream_status(http, "/v1/events/stream?api_key=" + guesses[6]) == 429);
  CHECK(stream_status(http, "/v1/events/ws?api_key=" + guesses[6]) == 429);
  CHECK(stream_status(http, "/v1/events/stream", bearer(guesses[6])) == 429);
  // The good key opens a stream during the block, by query as by header.
  CHECK(stream_status(http, "/v1/events/stream?api_key=" + good.api_key) == 200);
  CHECK(stream_status(http, "/v1/events/stream", bearer(good.api_key)) == 200);
  for (int i = 6; i < 40; ++i) {
    auto r = http.Get("/v1/webhooks", bearer(guesses[i]));
    REQUIRE(r);
    CHECK(r->status == 429);
    CHECK(std::stoi(r->get_header_value("Retry-After")) >= 1);
  }
  // A missing key is a plain 401 (not a guess), and a send with a guessed key is refused too.
  CHECK(http.Get("/v1/webhooks")->status == 401);
  CHECK(call(http, "POST", "/v1/sessions/main/messages", guesses[0], kSend).status == 429);
  // The good key works throughout, on every route kind.
  CHECK(call(http, "POST", "/v1/sessions/main/messages", good.api_key, kSend).status == 202);
  CHECK(call(http, "GET", "/v1/webhooks", good.api_key).status == 200);
  // A key not yet known good is not looked up from a blocked address …
  CHECK(call(http, "GET", "/v1/webhooks", later.api_key).status == 429);
  // … until the block ends (auth_block_s); then it works, and a bad key is a 401 again.
  REQUIRE(sbtest::eventually([&] { return call(http, "GET", "/v1/webhooks", later.api_key).status == 200; }, 15000, 250));
  CHECK(call(http, "GET", "/v1/webhooks", guesses[39]).status == 401);

  // Logged once for the whole block, naming the source, never a key.
  intake.signal(SIGTERM);
  REQUIRE(intake.wait(15000) == 0);
  const auto log = intake.log();
  CHECK(count_lines(intake.log_path(), "intake.auth_throttled") == 1);
  CHECK(log.find("127.0.0.1") != std::string::npos);
  for (const auto& g : guesses) CHECK(log.find(g) == std::string::npos);
}
