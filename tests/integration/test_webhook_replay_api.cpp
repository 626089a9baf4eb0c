// The events store and the webhook API routes built on it: replay an endpoint's events from a
// point in time, redeliver one event, list an endpoint's delivery attempts. Replay and redeliver
// only park rows in webhook_deliveries (the dispatcher's retry poller sends them), so the tests
// assert on those rows. Everything is tenant-scoped: another tenant's endpoint or event is a 404.
#include <catch2/catch.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "intake_api.hpp"
#include "stack.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/producers/intake_server.hpp"

using nlohmann::json;
using sbtest::bearer;
using sbtest::call;
using Api = sbtest::InProcessIntake;

namespace {
std::string create_endpoint(httplib::Client& http, const std::string& key, const std::string& body) {
  auto r = call(http, "POST", "/v1/webhooks", key, body);
  REQUIRE(r.status == 201);
  return r.body["id"];
}
sb::StoredEvent event(const sbtest::TenantInfo& t, const std::string& type, const std::string& occurred_at,
                      std::optional<std::string> session = std::string("main")) {
  sb::StoredEvent e;
  e.id = sb::new_uuid_v7();
  e.tenant_id = t.id;
  e.type = type;
  e.session = std::move(session);
  e.occurred_at = occurred_at;
  e.body = json({{"id", e.id}, {"type", type}, {"occurred_at", occurred_at}}).dump();
  return e;
}
struct Parked {
  std::string endpoint_id, tenant_id, event_id, event_type;
  std::optional<std::string> session;
  std::string body;
  int attempts;
  bool ordered, due;
};
// The parked deliveries of one endpoint (or of one event), in schedule (row id) order.
std::vector<Parked> parked(const sb::Config& config, const std::string& column, const std::string& value) {
  pqxx::connection c(config.postgres.url);
  pqxx::nontransaction tx(c);
  std::vector<Parked> out;
  for (const auto& r : tx.exec_params("SELECT endpoint_id::text, tenant_id::text, event_id::text, event_type, session, body, "
                                      "attempts, ordered, due_at <= now() FROM webhook_deliveries WHERE " + column +
                                          " = $1::uuid ORDER BY id",
                                      value)) {
    Parked p{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
             std::nullopt, r[5].as<std::string>(), r[6].as<int>(), r[7].as<bool>(), r[8].as<bool>()};
    if (!r[4].is_null()) p.session = r[4].as<std::string>();
    out.push_back(std::move(p));
  }
  return out;
}
std::vector<std::string> event_ids(const std::vector<Parked>& rows) {
  std::vector<std::string> out;
  for (const auto& p : rows) out.push_back(p.event_id);
  return out;
}
std::vector<std::string> ids(const std::vector<sb::StoredEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.id);
  return out;
}
}  // namespace

TEST_CASE("event store: idempotent record, since() order and limit, tenant scope, purge", "[integration][webhooks]") {
  sbtest::TestStack stack("event-store");
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  sb::pg::Pool pool(stack.config.postgres);
  sb::EventStore store(pool);

  auto e1 = event(acme, "message.sent", "2025-03-01T12:00:02Z");
  auto e2 = event(acme, "message.failed", "2025-03-01T12:00:01.250Z", std::nullopt);
  auto e3 = event(acme, "message.sent", "2025-03-01T13:00:03+01:00");  // 12:00:03Z
  auto g1 = event(globex, "message.sent", "2025-03-01T12:00:01Z");
  store.record({e1, e2, e3, g1});
  auto again = e1;
  again.body = R"({"changed":true})";
  store.record({again, e2});  // recorded once: the first body stays

  auto got = store.get(acme.id, e1.id);
  REQUIRE(got);
  CHECK(got->body == e1.body);
  CHECK(got->type == "message.sent");
  CHECK(got->session == std::optional<std::string>("main"));
  CHECK(got->occurred_at == "2025-03-01T12:00:02.000Z");
  CHECK(got->tenant_id == acme.id);
  CHECK(store.get(acme.id, e2.id)->session == std::nullopt);
  CHECK(store.get(acme.id, e3.id)->occurred_at == "2025-03-01T12:00:03.000Z");
  CHECK_FALSE(store.get(globex.id, e1.id));  // another tenant's event is not there
  CHECK_FALSE(store.get(acme.id, "not-a-uuid"));
  CHECK_FALSE(store.get(acme.id, sb::new_uuid_v7()));

  CHECK(ids(store.since(acme.id, "2025-03-01T00:00:00Z", 10)) == std::vector<std::string>{e2.id, e1.id, e3.id});
  CHECK(ids(store.since(acme.id, "2025-03-01T00:00:00Z", 2)) == std::vector<std::string>{e2.id, e1.id});
  CHECK(ids(store.since(acme.id, "2025-03-01T12:00:01.500Z", 10)) == std::vector<std::string>{e1.id, e3.id});
  // Inclusive, and offsets are honoured: 14:00:02+02:00 is e1's instant.
  CHECK(ids(store.since(acme.id, "2025-03-01T14:00:02+02:00", 10)) == std::vector<std::string>{e1.id, e3.id});
  CHECK(store.since(acme.id, "2999-01-01T00:00:00Z", 10).empty());
  CHECK(ids(store.since(globex.id, "2025-01-01T00:00:00Z", 10)) == std::vector<std::string>{g1.id});
  CHECK_THROWS_AS(store.since(acme.id, "2025-02-30T00:00:00Z", 10), sb::InvalidInput);

  // Retention counts from recorded_at (when the dispatcher saw it), not occurred_at.
  CHECK(store.purge_older_than(30, 100) == 0);
  {
    pqxx::connection c(stack.config.postgres.url);
    pqxx::work tx(c);
    tx.exec_params("UPDATE events SET recorded_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
                   sb::pg::array_literal({e1.id, e2.id, g1.id}));
    tx.exec_params("UPDATE events SET recorded_at = now() - interval '20 days' WHERE id = $1::uuid", e3.id);
    tx.commit();
  }
  CHECK(store.purge_older_than(30, 2) == 2);  // at most `limit` per call
  CHECK(store.purge_older_than(30, 2) == 1);
  CHECK(store.purge_older_than(30, 2) == 0);
  CHECK(ids(store.since(acme.id, "2025-01-01T00:00:00Z", 10)) == std::vector<std::string>{e3.id});
  CHECK(store.since(globex.id, "2025-01-01T00:00:00Z", 10).empty());
  CHECK(store.purge_older_than(10, 100) == 1);
}

TEST_CASE("webhooks api: replay schedules the endpoint's matching events since a time", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-replay");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  stack.config.webhooks.replay_max_events = 4;
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  sb::pg::Pool pool(stack.config.postgres);
  sb::EventStore events(pool);
  Api api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());

  const auto sent = create_endpoint(http, acme.api_key,
                                    R"({"url":"http://127.0.0.1:9/sent","events":["message.sent"],"ordering":"per_session"})");
  const auto all = create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/all","events":["*"]})");
  const auto theirs = create_endpoint(http, globex.api_key, R"({"url":"http://127.0.0.1:9/g","events":["*"]})");

  // Since T: s0..s3 (inserted out of occurred_at order); before T: old. Globex has one too.
  const std::string T = "2025-03-01T12:00:00Z";
  auto old = event(acme, "message.sent", "2025-03-01T11:59:59.999Z");
  auto s1 = event(acme, "message.sent", "2025-03-01T12:00:01Z");
  auto s0 = event(acme, "message.sent", "2025-03-01T12:00:00Z");
  auto s2 = event(acme, "message.failed", "2025-03-01T12:00:02Z");
  auto s3 = event(acme, "message.sent", "2025-03-01T12:00:03Z", std::nullopt);
  auto g = event(globex, "message.sent", "2025-03-01T12:00:01Z");
  events.record({old, s1, s3, s0, s2, g});

  auto r = call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, json({{"since", T}}).dump());
  REQUIRE(r.status == 202);
  CHECK(r.body == json({{"scheduled", 3}, {"already_pending", 0}, {"truncated", false}}));
  auto rows = parked(stack.config, "endpoint_id", sent);
  CHECK(event_ids(rows) == std::vector<std::string>{s0.id, s1.id, s3.id});  // oldest first, message.sent only
  REQUIRE(rows.size() == 3);
  for (const auto& p : rows) {
    CHECK(p.tenant_id == acme.id);
    CHECK(p.event_type == "message.sent");
    CHECK(p.attempts == 0);
    CHECK(p.ordered);  // per_session endpoint
    CHECK(p.due);
  }
  CHECK(rows[0].body == s0.body);
  CHECK(rows[0].session == std::optional<std::string>("main"));
  CHECK(rows[2].session == std::nullopt);

  // Replaying again parks nothing twice; a future `since` finds nothing.
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, json({{"since", T}}).dump()).status == 202);
  CHECK(parked(stack.config, "endpoint_id", sent).size() == 3);
  auto future = call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, R"({"since":"2999-01-01T00:00:00Z"})");
  CHECK(future.status == 202);
  CHECK(future.body == json({{"scheduled", 0}, {"already_pending", 0}, {"truncated", false}}));

  // More than webhooks.replay_max_events (4) since T: the oldest 4 are scheduled, truncated.
  auto s4 = event(acme, "message.failed", "2025-03-01T12:00:04Z");
  events.record({s4});
  auto capped = call(http, "POST", "/v1/webhooks/" + all + "/replay", acme.api_key, R"({"since":"2025-03-01T13:00:00+01:00"})");
  REQUIRE(capped.status == 202);
  CHECK(capped.body == json({{"scheduled", 4}, {"already_pending", 0}, {"truncated", true}}));
  auto all_rows = parked(stack.config, "endpoint_id", all);
  CHECK(event_ids(all_rows) == std::vector<std::string>{s0.id, s1.id, s2.id, s3.id});
  for (const auto& p : all_rows) CHECK_FALSE(p.ordered);

  // Other tenants' endpoints and events stay out of reach.
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", globex.api_key, json({{"since", T}}).dump()).status == 404);
  CHECK(call(http, "POST", "/v1/webhooks/" + theirs + "/replay", acme.api_key, json({{"since", T}}).dump()).status == 404);
  CHECK(call(http, "POST", "/v1/webhooks/" + sb::new_uuid_v7() + "/replay", acme.api_key, json({{"since", T}}).dump()).status == 404);
  CHECK(call(http, "POST", "/v1/webhooks/nope/replay", acme.api_key, json({{"since", T}}).dump()).status == 404);
  auto g_replay = call(http, "POST", "/v1/webhooks/" + theirs + "/replay", globex.api_key, json({{"since", T}}).dump());
  CHECK(g_replay.body == json({{"scheduled", 1}, {"already_pending", 0}, {"truncated", false}}));
  CHECK(event_ids(parked(stack.config, "endpoint_id", theirs)) == std::vector<std::string>{g.id});

  // Bad input.
  for (const char* bad : {R"({"since":"yesterday"})", R"({"since":"2025-03-01"})", R"({"since":"2025-02-30T00:00:00Z"})",
                          R"({"since":"2025-03-01T24:00:00Z"})", R"({"since":12})"}) {
    auto b = call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, bad);
    CHECK(b.status == 422);
    CHECK(b.body["field"] == "since");
  }
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, "{}").status == 422);
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, R"({"since":")" + T + R"(","x":1})").status == 422);
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, R"({"since": )").status == 400);
  CHECK(call(http, "POST", "/v1/webhooks/" + sent + "/replay", "sb_live_nope", json({{"since", T}}).dump()).status == 401);

  // A disabled endpoint must be enabled before it is replayed to.
  REQUIRE(call(http, "PATCH", "/v1/webhooks/" + sent, acme.api_key, R"({"enabled":false})").status == 200);
  auto disabled = call(http, "POST", "/v1/webhooks/" + sent + "/replay", acme.api_key, json({{"since", T}}).dump());
  CHECK(disabled.status == 409);
  CHECK_THAT(disabled.body["error"].get<std::string>(), Catch::Contains("enable it first"));
}

TEST_CASE("webhooks api: redeliver one event to the tenant's enabled matching endpoints", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-redeliver");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  sb::pg::Pool pool(stack.config.postgres);
  sb::EventStore events(pool);
  Api api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());

  const auto sent = create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/a","events":["message.sent"]})");
  const auto family = create_endpoint(
      http, acme.api_key, R"({"url":"http://127.0.0.1:9/b","events":["message.*"],"ordering":"per_session"})");
  create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/c","events":["message.failed"]})");
  create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/d","events":["*"],"enabled":false})");
  const auto theirs = create_endpoint(http, globex.api_key, R"({"url":"http://127.0.0.1:9/g","events":["*"]})");

  auto ev = event(acme, "message.sent", "2025-03-01T12:00:00Z");
  auto lonely = event(acme, "webhook.endpoint.disabled", "2025-03-01T12:00:00Z", std::nullopt);
  auto g = event(globex, "message.sent", "2025-03-01T12:00:00Z");
  events.record({ev, lonely, g});

  auto r = call(http, "POST", "/v1/events/" + ev.id + "/redeliver", acme.api_key);
  REQUIRE(r.status == 202);
  CHECK(r.body == json({{"scheduled", 2}, {"already_pending", 0}, {"endpoints", {sent, family}}}));
  auto rows = parked(stack.config, "event_id", ev.id);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].endpoint_id == sent);
  CHECK_FALSE(rows[0].ordered);
  CHECK(rows[1].endpoint_id == family);
  CHECK(rows[1].ordered);
  for (const auto& p : rows) {
    CHECK(p.tenant_id == acme.id);
    CHECK(p.event_type == "message.sent");
    CHECK(p.session == std::optional<std::string>("main"));
    CHECK(p.body == ev.body);
    CHECK(p.attempts == 0);
    CHECK(p.due);
  }

  // No subscriber: accepted, nothing parked.
  auto none = call(http, "POST", "/v1/events/" + lonely.id + "/redeliver", acme.api_key);
  CHECK(none.status == 202);
  CHECK(none.body == json({{"scheduled", 0}, {"already_pending", 0}, {"endpoints", json::array()}}));
  CHECK(parked(stack.config, "event_id", lonely.id).empty());

  // Another tenant's event, an unknown one and a malformed id are all simply not found.
  for (const auto& id : {g.id, sb::new_uuid_v7(), std::string("not-a-uuid"), std::string("1234")}) {
    auto nf = call(http, "POST", "/v1/events/" + id + "/redeliver", acme.api_key);
    CHECK(nf.status == 404);
    CHECK(nf.body["error"] == "event not found");
  }
  CHECK(call(http, "POST", "/v1/events/" + ev.id + "/redeliver", globex.api_key).status == 404);
  auto theirs_r = call(http, "POST", "/v1/events/" + g.id + "/redeliver", globex.api_key);
  CHECK(theirs_r.body == json({{"scheduled", 1}, {"already_pending", 0}, {"endpoints", {theirs}}}));
  CHECK(parked(stack.config, "event_id", g.id).size() == 1);
  CHECK(call(http, "POST", "/v1/events/" + ev.id + "/redeliver", "sb_live_nope").status == 401);
}

TEST_CASE("webhooks api: attempts listed newest first, limited, filtered by status, per tenant", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-attempts-api");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  sb::pg::Pool pool(stack.config.postgres);
  sb::WebhookDeliveryStore deliveries(pool);
  Api api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());

  const auto ep = create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/a","events":["*"]})");
  const auto other = create_endpoint(http, acme.api_key, R"({"url":"http://127.0.0.1:9/b","events":["*"]})");
  const auto e1 = sb::new_uuid_v7(), e2 = sb::new_uuid_v7();
  auto attempt = [&](const std::string& endpoint, const std::string& event_id, int n, const std::string& outcome,
                     std::optional<int> status, std::optional<std::string> error, std::optional<std::string> excerpt) {
    sb::AttemptRecord a;
    a.endpoint_id = endpoint;
    a.tenant_id = acme.id;
    a.event_id = event_id;
    a.event_type = "message.sent";
    a.attempt = n;
    a.outcome = outcome;
    a.http_status = status;
    a.error = std::move(error);
    a.response_excerpt = std::move(excerpt);
    a.latency_ms = 10 * n;
    deliveries.record_attempts({a});  // one at a time: "newest" is well defined
  };
  attempt(ep, e1, 1, "failed", 500, "HTTP 500", "oops");
  attempt(ep, e1, 2, "failed", std::nullopt, "timed out after 15000 ms", std::nullopt);
  attempt(ep, e1, 3, "dead_lettered", 503, "HTTP 503", std::nullopt);
  attempt(ep, e2, 1, "succeeded", 200, std::nullopt, "ok");
  attempt(other, e2, 1, "succeeded", 204, std::nullopt, std::nullopt);

  auto list = call(http, "GET", "/v1/webhooks/" + ep + "/attempts", acme.api_key);
  REQUIRE(list.status == 200);
  const auto& data = list.body["data"];
  REQUIRE(data.size() == 4);
  CHECK(data[0] == json({{"at", data[0]["at"]},
                         {"event_id", e2},
                         {"event_type", "message.sent"},
                         {"attempt", 1},
                         {"outcome", "succeeded"},
                         {"http_status", 200},
                         {"error", nullptr},
                         {"latency_ms", 10},
                         {"response_excerpt", "ok"}}));
  CHECK_THAT(data[0]["at"].get<std::string>(), Catch::Matches(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"));
  CHECK(data[1]["outcome"] == "dead_lettered");
  CHECK(data[1]["response_excerpt"].is_null());
  CHECK(data[2]["attempt"] == 2);
  CHECK(data[2]["http_status"].is_null());
  CHECK(data[2]["error"] == "timed out after 15000 ms");
  CHECK(data[3]["attempt"] == 1);
  CHECK(data[3]["event_id"] == e1);
  CHECK(data[3]["response_excerpt"] == "oops");

  auto two = call(http, "GET", "/v1/webhooks/" + ep + "/attempts?limit=2", acme.api_key);
  REQUIRE(two.status == 200);
  REQUIRE(two.body["data"].size() == 2);
  CHECK(two.body["data"][0]["outcome"] == "succeeded");
  CHECK(two.body["data"][1]["outcome"] == "dead_lettered");
  auto failed = call(http, "GET", "/v1/webhooks/" + ep + "/attempts?status=failed", acme.api_key);
  REQUIRE(failed.body["data"].size() == 2);
  CHECK(failed.body["data"][0]["attempt"] == 2);
  CHECK(call(http, "GET", "/v1/webhooks/" + ep + "/attempts?status=failed&limit=1", acme.api_key).body["data"].size() == 1);
  CHECK(call(http, "GET", "/v1/webhooks/" + ep + "/attempts?status=dead_lettered", acme.api_key).body["data"].size() == 1);
  CHECK(call(http, "GET", "/v1/webhooks/" + ep + "/attempts?status=succeeded&limit=1000", acme.api_key).body["data"].size() == 1);
  CHECK(call(http, "GET", "/v1/webhooks/" + other + "/attempts", acme.api_key).body["data"].size() == 1);

  for (const char* q : {"limit=0", "limit=1001", "limit=abc", "limit=5x", "limit=-1", "limit="}) {
    auto b = call(http, "GET", "/v1/webhooks/" + ep + "/attempts?" + q, acme.api_key);
    CHECK(b.status == 422);
    CHECK(b.body["field"] == "limit");
  }
  for (const char* q : {"status=bogus", "status=", "status=FAILED"}) {
    auto b = call(http, "GET", "/v1/webhooks/" + ep + "/attempts?" + q, acme.api_key);
    CHECK(b.status == 422);
    CHECK(b.body["field"] == "status");
  }

  CHECK(call(http, "GET", "/v1/webhooks/" + ep + "/attempts", globex.api_key).status == 404);
  CHECK(call(http, "GET", "/v1/webhooks/" + sb::new_uuid_v7() + "/attempts", acme.api_key).status == 404);
  CHECK(call(http, "GET", "/v1/webhooks/nope/attempts", acme.api_key).status == 404);
  CHECK(call(http, "GET", "/v1/webhooks/" + ep + "/attempts", "sb_live_nope").status == 401);
}
