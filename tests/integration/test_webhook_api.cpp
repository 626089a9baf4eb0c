// Webhook endpoint management through intake: tenant-scoped CRUD, secret rotation, and the
// input it must refuse (bad URLs, non-http schemes, private addresses, unknown event types).
#include <catch2/catch.hpp>
#include <thread>

#include "intake_api.hpp"
#include "stack.hpp"
#include "switchboard/producers/intake_server.hpp"

using nlohmann::json;
using sbtest::bearer;
using sbtest::call;
using Api = sbtest::InProcessIntake;

TEST_CASE("webhooks api: create, list, get, rotate, disable, delete — per tenant", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-api");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  Api api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());

  auto created = call(http, "POST", "/v1/webhooks", acme.api_key,
                      R"({"url":"http://127.0.0.1:9/hook","events":["message.sent","session.*"]})");
  REQUIRE(created.status == 201);
  const std::string id = created.body["id"];
  const std::string secret = sbtest::minted(created.body["secret"]);
  CHECK(secret.rfind("whsec_", 0) == 0);
  CHECK(created.body["enabled"] == true);
  CHECK(created.body["events"] == json({"message.sent", "session.*"}));

  auto mine = call(http, "POST", "/v1/webhooks", acme.api_key,
                   R"({"url":"http://127.0.0.1:9/other","events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","ordering":"per_session"})");
  REQUIRE(mine.status == 201);
  CHECK(mine.body["secret"] == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  CHECK(mine.body["ordering"] == "per_session");

  auto listed = call(http, "GET", "/v1/webhooks", acme.api_key);
  REQUIRE(listed.status == 200);
  CHECK(listed.body["data"].size() == 2);
  CHECK_FALSE(listed.body["data"][0].contains("secret"));  // shown on create and rotation only
  CHECK(call(http, "GET", "/v1/webhooks", globex.api_key).body["data"].empty());

  auto rotated = call(http, "PATCH", "/v1/webhooks/" + id, acme.api_key, R"({"rotate_secret":true})");
  REQUIRE(rotated.status == 200);
  CHECK(rotated.body["secret"] != secret);
  CHECK(rotated.body.contains("previous_secret_expires_at"));

  auto disabled = call(http, "PATCH", "/v1/webhooks/" + id, acme.api_key, R"({"enabled":false,"events":["message.failed"]})");
  REQUIRE(disabled.status == 200);
  CHECK(disabled.body["enabled"] == false);
  CHECK(disabled.body["events"] == json({"message.failed"}));

  // Another tenant can neither see nor touch it.
  CHECK(call(http, "GET", "/v1/webhooks/" + id, globex.api_key).status == 404);
  CHECK(call(http, "PATCH", "/v1/webhooks/" + id, globex.api_key, R"({"enabled":true})").status == 404);
  CHECK(call(http, "DELETE", "/v1/webhooks/" + id, globex.api_key).status == 404);
  CHECK(call(http, "GET", "/v1/webhooks/" + id, acme.api_key).body["enabled"] == false);

  CHECK(call(http, "DELETE", "/v1/webhooks/" + id, acme.api_key).status == 204);
  CHECK(call(http, "GET", "/v1/webhooks/" + id, acme.api_key).status == 404);
  CHECK(call(http, "GET", "/v1/webhooks", "sb_live_nope").status == 401);
}

TEST_CASE("webhooks api: bad URLs, schemes, private addresses and unknown events are 4xx", "[integration][webhooks][ssrf]") {
  sbtest::TestStack stack("webhook-api-bad");
  stack.config.intake.listen = "127.0.0.1:0";  // no allow-list: loopback is refused too
  auto acme = stack.create_tenant("acme");
  Api api(stack.config);
  httplib::Client http("127.0.0.1", api.server.port());
  auto create = [&](const std::string& body) { return call(http, "POST", "/v1/webhooks", acme.api_key, body); };

  auto r1 = create(R"({"url":"ftp://example.com/x","events":["*"]})");
  CHECK(r1.status == 422);
  CHECK(r1.body["field"] == "url");
  CHECK(create(R"({"url":"not a url","events":["*"]})").status == 422);
  CHECK(create(R"({"url":"http://user@example.com/x","events":["*"]})").status == 422);
  auto r2 = create(R"({"url":"http://10.1.2.3/hook","events":["*"]})");
  CHECK(r2.status == 422);
  CHECK_THAT(r2.body["error"].get<std::string>(), Catch::Contains("10.1.2.3"));
  auto r3 = create(R"({"url":"http://169.254.169.254/latest/meta-data","events":["*"]})");
  CHECK(r3.status == 422);
  CHECK_THAT(r3.body["error"].get<std::string>(), Catch::Contains("metadata"));
  CHECK(create(R"({"url":"http://127.0.0.1:8080/hook","events":["*"]})").status == 422);
  CHECK(create(R"({"url":"http://localhost/hook","events":["*"]})").status == 422);
  CHECK(create(R"({"url":"http://[::1]/hook","events":["*"]})").status == 422);
  auto r4 = create(R"({"url":"http://8.8.8.8/hook","events":["message.exploded"]})");
  CHECK(r4.status == 422);
  CHECK(r4.body["field"] == "events");
  CHECK(create(R"({"url":"http://8.8.8.8/hook","events":["nothing.*"]})").status == 422);
  CHECK(create(R"({"url":"http://8.8.8.8/hook","events":[]})").status == 422);
  CHECK(create(R"({"url":"http://8.8.8.8/hook","events":["*"],"secret":"whsec_!!"})").status == 422);
  CHECK(create(R"({"url":"http://8.8.8.8/hook"})").status == 422);
  CHECK(create(R"({"url": )").status == 400);
  // A public address passes the guard (it is only resolved, never contacted, at creation).
  CHECK(create(R"({"url":"https://8.8.8.8/hook","events":["message.*"]})").status == 201);
}
