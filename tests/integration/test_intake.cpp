// Intake against the real broker and database: validation, auth, idempotency, tenant isolation.
#include <catch2/catch.hpp>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/producers/intake_server.hpp"

using nlohmann::json;
using sbtest::bearer;

namespace {
// Runs an IntakeServer in this process for the duration of a test.
struct RunningIntake {
  sb::IntakeServer server;
  std::thread thread;
  explicit RunningIntake(const sb::Config& c) : server(c), thread([this] { server.run(); }) {
    REQUIRE(server.wait_until_ready(10000));
  }
  ~RunningIntake() {
    server.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(15, 0);
    return c;
  }
};

const std::string kBody = R"({"to":"+15551234567","text":"hi"})";
}  // namespace

TEST_CASE("intake: a valid send is 202 after the broker acked it, and is queryable at once", "[integration][intake]") {
  sbtest::TestStack stack("intake-send");
  stack.config.intake.listen = "127.0.0.1:0";
  auto tenant = stack.create_tenant("acme");
  RunningIntake intake(stack.config);
  auto http = intake.client();

  auto res = http.Post("/v1/sessions/main/messages", bearer(tenant.api_key),
                       R"({"to":"+15551234567","text":"hi","priority":"high"})", "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 202);
  auto body = json::parse(res->body);
  CHECK(body["status"] == "queued");
  const std::string id = body["id"];

  auto got = http.Get(("/v1/messages/" + id).c_str(), bearer(tenant.api_key));
  REQUIRE(got);
  REQUIRE(got->status == 200);
  auto m = json::parse(got->body);
  CHECK(m["status"] == "queued");
  CHECK(m["priority"] == "high");
  CHECK(m["history"][0]["status"] == "queued");

  // The command is on the high lane, keyed by the tenant id, valid against the published schema.
  sbtest::TopicReader lane(stack.config, stack.topic("sb.commands.high"));
  REQUIRE(lane.read_until([](const auto& r) { return !r.empty(); }, 10000));
  const auto* rec = lane.records().front().get();
  CHECK(sb::kafka::key_of(rec) == tenant.id);
  sb::SchemaSet schemas(stack.config.schemas_dir);
  auto cmd = sb::parse_command(sb::kafka::key_of(rec), sb::kafka::value_of(rec), schemas);
  CHECK(cmd.id == id);
  CHECK(cmd.text == "hi");
}

TEST_CASE("intake: bad input gets a clear 4xx and the server keeps serving", "[integration][intake]") {
  sbtest::TestStack stack("intake-bad");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.intake.max_body_bytes = 1024;
  auto tenant = stack.create_tenant("acme");
  RunningIntake intake(stack.config);
  auto http = intake.client();
  const auto auth = bearer(tenant.api_key);
  auto post = [&](const std::string& path, const std::string& body, const httplib::Headers& h) {
    auto r = http.Post(path.c_str(), h, body, "application/json");
    REQUIRE(r);
    return std::make_pair(r->status, r->body.empty() ? json() : json::parse(r->body));
  };

  auto [s1, b1] = post("/v1/sessions/main/messages", R"({"to": "+1555)", auth);
  CHECK(s1 == 400);
  CHECK_THAT(b1["error"].get<std::string>(), Catch::Contains("malformed JSON"));

  auto [s2, b2] = post("/v1/sessions/main/messages", R"({"to": 15551234567, "text": "hi"})", auth);
  CHECK(s2 == 422);
  CHECK(b2["field"] == "to");

  auto [s3, b3] = post("/v1/sessions/main/messages", R"({"to": "+15551234567", "text": "hi", "priority": "urgent"})", auth);
  CHECK(s3 == 422);
  CHECK(b3["field"] == "priority");

  auto [s4, b4] = post("/v1/sessions/main/messages", R"({"to":"+15551234567","text":")" + std::string(2000, 'x') + "\"}", auth);
  CHECK(s4 == 413);
  CHECK_THAT(b4["error"].get<std::string>(), Catch::Contains("too large"));

  auto [s5, b5] = post("/v1/sessions/nosuch/messages", kBody, auth);
  CHECK(s5 == 404);
  CHECK(b5["field"] == "session");

  auto [s6, b6] = post("/v1/sessions/main/messages", kBody, {});
  CHECK(s6 == 401);
  auto [s7, b7] = post("/v1/sessions/main/messages", kBody, bearer("sb_live_not-a-key"));
  CHECK(s7 == 401);
  CHECK_THAT(b7["error"].get<std::string>(), Catch::Contains("API key"));

  auto [s8, b8] = post("/v1/sessions/main/messages", kBody, [&] { auto h = auth; h.emplace("Idempotency-Key", std::string(300, 'k')); return h; }());
  CHECK(s8 == 422);
  CHECK(b8["field"] == "idempotency_key");

  // Bytes that are not UTF-8 (found by schemathesis): a 400 whose JSON answer is itself valid
  // (the parser's message quotes the bad byte; it was a 500 when the reply could not be encoded).
  for (const auto& bad : {std::string("\xff"), std::string("{\"to\":\"+15551234567\",\"text\":\"h\xffi\"}")}) {
    for (const char* path : {"/v1/sessions/main/messages", "/v1/webhooks"}) {
      auto r = http.Post(path, auth, bad, "application/json");
      REQUIRE(r);
      INFO(path << ": " << r->body);
      CHECK(r->status == 400);
      CHECK_THAT(json::parse(r->body)["error"].get<std::string>(), Catch::Contains("malformed JSON"));
    }
  }

  // Nothing above was queued; a good request still works.
  auto [ok, body] = post("/v1/sessions/main/messages", kBody, auth);
  CHECK(ok == 202);
  auto health = http.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto ready = http.Get("/health/ready");
  REQUIRE(ready);
  CHECK(ready->status == 200);
  CHECK(json::parse(ready->body)["kafka"] == true);
}

TEST_CASE("intake: an idempotency key returns the same message instead of a second one", "[integration][intake][idempotency]") {
  sbtest::TestStack stack("intake-idem");
  stack.config.intake.listen = "127.0.0.1:0";
  auto tenant = stack.create_tenant("acme");
  auto other = stack.create_tenant("globex");
  RunningIntake intake(stack.config);
  auto http = intake.client();
  auto send = [&](const std::string& key, const std::string& body, const std::string& api_key) {
    auto h = bearer(api_key);
    if (!key.empty()) h.emplace("Idempotency-Key", key);
    auto r = http.Post("/v1/sessions/main/messages", h, body, "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 202);
    return json::parse(r->body)["id"].get<std::string>();
  };
  const auto a = send("order-1", kBody, tenant.api_key);
  CHECK(send("order-1", kBody, tenant.api_key) == a);
  CHECK(send("", R"({"to":"+15551234567","text":"hi","idempotency_key":"order-1"})", tenant.api_key) == a);
  CHECK(send("order-2", kBody, tenant.api_key) != a);
  CHECK(send("", kBody, tenant.api_key) != send("", kBody, tenant.api_key));
  // Keys are per tenant: another tenant's "order-1" is its own message.
  CHECK(send("order-1", kBody, other.api_key) != a);

  // Concurrent retries with one key (they may share an insert batch) agree on one id.
  std::vector<std::string> ids(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", intake.server.port());
      auto h = bearer(tenant.api_key);
      h.emplace("Idempotency-Key", "burst");
      auto r = c.Post("/v1/sessions/main/messages", h, kBody, "application/json");
      if (r && r->status == 202) ids[i] = json::parse(r->body)["id"];
    });
  for (auto& t : threads) t.join();
  for (const auto& id : ids) CHECK(id == ids[0]);
  CHECK_FALSE(ids[0].empty());

  // Exactly the distinct messages reached the lane: 1 (order-1) + 1 (order-2) + 2 + 1 (globex) + 1 (burst),
  // plus republished copies of still-queued replays, which share their message id.
  sbtest::TopicReader lane(stack.config, stack.topic("sb.commands.default"));
  lane.read_until([](const auto&) { return false; }, 3000);
  std::set<std::string> distinct;
  for (const auto& r : lane.records()) distinct.insert(json::parse(sb::kafka::value_of(r.get()))["id"].get<std::string>());
  CHECK(distinct.size() == 6);
}

TEST_CASE("intake: a tenant only ever sees its own messages", "[integration][intake]") {
  sbtest::TestStack stack("intake-tenancy");
  stack.config.intake.listen = "127.0.0.1:0";
  auto a = stack.create_tenant("acme");
  auto b = stack.create_tenant("globex");
  RunningIntake intake(stack.config);
  auto http = intake.client();
  auto r = http.Post("/v1/sessions/main/messages", bearer(a.api_key), kBody, "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 202);
  const std::string id = json::parse(r->body)["id"];
  auto mine = http.Get(("/v1/messages/" + id).c_str(), bearer(a.api_key));
  REQUIRE(mine);
  CHECK(mine->status == 200);
  auto theirs = http.Get(("/v1/messages/" + id).c_str(), bearer(b.api_key));
  REQUIRE(theirs);
  CHECK(theirs->status == 404);
  auto junk = http.Get("/v1/messages/not-a-uuid", bearer(a.api_key));
  REQUIRE(junk);
  CHECK(junk->status == 404);
}
