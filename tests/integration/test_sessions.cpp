// Sessions for real, end to end with real processes: intake → sb.commands.high → worker →
// the simulator playing a WAHA engine node → its signed webhooks → intake → sb.callbacks →
// callbacks worker → PostgreSQL + sb.events → webhook endpoints.
#include <catch2/catch.hpp>
#include <httplib.h>

#include <functional>
#include <mutex>
#include <thread>

#include <fstream>

#include "intake_api.hpp"
#include "python_tool.hpp"
#include "session_system.hpp"
#include "stack.hpp"
#include "switchboard/core/hmac.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/pg.hpp"

using nlohmann::json;
using sbtest::Child;
using sbtest::TestStack;
using sbtest::Receiver;
using sbtest::events;
using sbtest::session_of;
using sbtest::sim_post;
using sbtest::status_is;
using sbtest::wait_qr;
using System = sbtest::SessionSystem;


TEST_CASE("sessions: an engine session end to end — QR, pairing, send → sent → delivered → read, inbound, "
          "disconnect and back, stop, logout, delete",
          "[integration][sessions]") {
  TestStack stack("sessions_engine");
  System sys(stack);
  auto tenant = stack.create_tenant("acme", {});
  Receiver receiver;
  httplib::Client api("127.0.0.1", sys.intake_port);
  auto hook = sbtest::call(api, "POST", "/v1/webhooks", tenant.api_key,
                           json{{"url", "http://127.0.0.1:" + std::to_string(receiver.port) + "/hook"},
                                {"events", {"session.*", "message.*"}}}.dump());
  REQUIRE(hook.status == 201);

  auto created = sbtest::call(api, "POST", "/v1/sessions", tenant.api_key, json{{"id", "s1"}, {"provider", "engine"}}.dump());
  INFO(created.body.dump());
  REQUIRE(created.status == 201);
  CHECK(created.body["provider"] == "engine");
  CHECK(created.body["node"] == "sim");

  // Pairing: the QR is shown by the API and reaches the webhook endpoint as session.qr.
  const auto qr = wait_qr(api, tenant.api_key, "s1");
  auto qr_reply = sbtest::call(api, "GET", "/v1/sessions/s1/qr", tenant.api_key);
  CHECK(qr_reply.body["mimetype"] == "image/png");
  CHECK(qr_reply.body["data"].get<std::string>().rfind("iVBORw0KGgo", 0) == 0);  // base64 of the PNG signature
  REQUIRE(sbtest::eventually([&] {
    for (const auto& e : receiver.of_type("session.qr"))
      if (e["data"]["value"] == qr && e["session"] == "s1") return true;
    return false;
  }, 20000));
  const auto paired = sim_post(sys.sim_port, "/sim/scan", {{"qr", qr}});
  const std::string account = paired["account"];
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "WORKING"); }, 20000));
  CHECK(session_of(api, tenant.api_key, "s1")["account"] == account);
  CHECK(sbtest::call(api, "GET", "/v1/sessions/s1/qr", tenant.api_key).status == 409);

  // A send goes out through the engine and its receipts come back.
  auto sent = sbtest::call(api, "POST", "/v1/sessions/s1/messages", tenant.api_key, json{{"to", "+15557654321"}, {"text", "hello engine"}}.dump());
  REQUIRE(sent.status == 202);
  const std::string id = sent.body["id"];
  REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["status"] == "read"; }, 20000));
  auto message = sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body;
  std::vector<std::string> history;
  for (const auto& h : message["history"]) history.push_back(h["status"]);
  CHECK(std::find(history.begin(), history.end(), "sent") != history.end());
  CHECK(std::find(history.begin(), history.end(), "delivered") != history.end());
  CHECK(std::find(history.begin(), history.end(), "read") != history.end());
  REQUIRE(sbtest::eventually([&] {
    return !receiver.of_type("message.read").empty() && !receiver.of_type("message.delivered").empty() &&
           !receiver.of_type("message.sent").empty();
  }, 20000));
  CHECK(receiver.of_type("message.read")[0]["data"]["message_id"] == id);

  // Inbound.
  sim_post(sys.sim_port, "/sim/inbound", {{"to", account}, {"from", "15550001111"}, {"text", "hi there"}});
  REQUIRE(sbtest::eventually([&] { return !receiver.of_type("message.received").empty(); }, 20000));
  auto in = receiver.of_type("message.received")[0];
  CHECK(in["session"] == "s1");
  CHECK(in["data"]["from"] == "+15550001111");
  CHECK(in["data"]["text"] == "hi there");

  // Disconnect: back to pairing; a send meanwhile is held, then sent once paired again.
  sim_post(sys.sim_port, "/sim/disconnect", {{"account", account}});
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "SCAN_QR_CODE"); }, 20000));
  auto held = sbtest::call(api, "POST", "/v1/sessions/s1/messages", tenant.api_key, json{{"to", "+15557654321"}, {"text", "while away"}}.dump());
  REQUIRE(held.status == 202);
  const auto qr2 = wait_qr(api, tenant.api_key, "s1", qr);
  sim_post(sys.sim_port, "/sim/scan", {{"qr", qr2}});
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "WORKING"); }, 20000));
  const std::string held_id = held.body["id"];
  REQUIRE(sbtest::eventually([&] {
    auto s = sbtest::call(api, "GET", "/v1/messages/" + held_id, tenant.api_key).body["status"];
    return s == "read" || s == "delivered";
  }, 20000));

  // Stop keeps the pairing (start resumes WORKING without a QR); logout forgets it.
  REQUIRE(sbtest::call(api, "POST", "/v1/sessions/s1/stop", tenant.api_key).status == 202);
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "STOPPED"); }, 20000));
  REQUIRE(sbtest::call(api, "POST", "/v1/sessions/s1/start", tenant.api_key).status == 202);
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "WORKING"); }, 20000));
  REQUIRE(sbtest::call(api, "POST", "/v1/sessions/s1/logout", tenant.api_key).status == 202);
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "s1", "STOPPED"); }, 20000));
  CHECK(session_of(api, tenant.api_key, "s1")["account"].is_null());

  // The status history tells the story, in time order.
  auto s = session_of(api, tenant.api_key, "s1");
  std::vector<std::string> statuses;
  for (const auto& h : s["history"]) statuses.push_back(h["status"]);
  INFO(s["history"].dump());
  CHECK(statuses.front() == "STOPPED");
  CHECK(std::count(statuses.begin(), statuses.end(), "WORKING") >= 3);
  CHECK(std::count(statuses.begin(), statuses.end(), "SCAN_QR_CODE") >= 2);
  // session.status events carry status and previous.
  auto status_events = events(stack.config, "session.status");
  REQUIRE_FALSE(status_events.empty());
  for (const auto& e : status_events) {
    CHECK(e["data"].contains("previous"));
    CHECK(e["tenant"] == tenant.id);
  }

  REQUIRE(sbtest::call(api, "DELETE", "/v1/sessions/s1", tenant.api_key).status == 202);
  REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/sessions/s1", tenant.api_key).status == 404; }, 20000));
  CHECK_FALSE(events(stack.config, "session.deleted").empty());
  // Every event of the story validates against the contract with an independent validator.
  {
    sbtest::TopicReader all(stack.config, stack.config.topic("sb.events"));
    // Until the story's last event (session.deleted) is read: everything before it is too.
    REQUIRE(all.read_until([](const auto& records) {
      for (const auto& r : records)
        if (json::parse(sb::kafka::value_of(r.get()))["type"] == "session.deleted") return true;
      return false;
    }, 20000));
    const std::string path = stack.log_dir + "/events.jsonl";
    std::ofstream out(path);
    for (const auto& r : all.records()) out << sb::kafka::value_of(r.get()) << "\n";
  }
  const auto run = sbtest::run_python({"tests/contract/validate_events.py", stack.log_dir + "/events.jsonl",
                                       "--types=" + std::string(sbtest::kSessionEventTypes)},
                                      stack.log_dir + "/validate_events.log");
  INFO(run.output);
  CHECK(run.exit_code == 0);
  // Another tenant sees none of it.
  auto other = stack.create_tenant("other", {});
  CHECK(sbtest::call(api, "GET", "/v1/sessions", other.api_key).body["sessions"].empty());
}

TEST_CASE("sessions: provider callbacks are verified — forged, unsigned, altered and malformed ones change nothing",
          "[integration][sessions][callbacks]") {
  TestStack stack("sessions_callbacks");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.engine.nodes["sim"] = sb::EngineNode{"sim", "http://127.0.0.1:9", "", "node-hmac-key"};
  stack.config.cloud_api.app_secret = "app-secret";
  stack.config.cloud_api.verify_token = "verify-me";
  sbtest::InProcessIntake intake(stack.config);
  httplib::Client http("127.0.0.1", intake.server.port());
  const std::string body = R"({"id":"evt_1","timestamp":1700000000000,"event":"session.status","session":"nobody","payload":{"status":"WORKING"}})";
  auto post = [&](const std::string& path, const std::string& b, httplib::Headers h) {
    auto r = http.Post(path.c_str(), h, b, "application/json");
    REQUIRE(r);
    return r->status;
  };
  const auto good = sb::hmac_hex(sb::HmacDigest::Sha512, "node-hmac-key", body);
  CHECK(post("/v1/providers/engine/sim/webhook", body, {}) == 401);
  CHECK(post("/v1/providers/engine/sim/webhook", body, {{"X-Webhook-Hmac", sb::hmac_hex(sb::HmacDigest::Sha512, "wrong", body)}}) == 401);
  CHECK(post("/v1/providers/engine/sim/webhook", body + " ", {{"X-Webhook-Hmac", good}}) == 401);  // altered after signing
  CHECK(post("/v1/providers/engine/nowhere/webhook", body, {{"X-Webhook-Hmac", good}}) == 404);
  const std::string bad = "{not json";
  CHECK(post("/v1/providers/engine/sim/webhook", bad, {{"X-Webhook-Hmac", sb::hmac_hex(sb::HmacDigest::Sha512, "node-hmac-key", bad)}}) == 400);
  CHECK(post("/v1/providers/engine/sim/webhook", body, {{"X-Webhook-Hmac", good}}) == 200);  // verified; unknown session: ignored

  const std::string cloud = R"({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123"},"statuses":[{"id":"wamid.x","status":"read","timestamp":"1700000000","recipient_id":"1555"}]}}]}]})";
  CHECK(post("/v1/providers/cloud_api/webhook", cloud, {}) == 401);
  CHECK(post("/v1/providers/cloud_api/webhook", cloud, {{"X-Hub-Signature-256", "sha256=" + sb::hmac_hex(sb::HmacDigest::Sha256, "nope", cloud)}}) == 401);
  CHECK(post("/v1/providers/cloud_api/webhook", cloud, {{"X-Hub-Signature-256", "sha256=" + sb::hmac_hex(sb::HmacDigest::Sha256, "app-secret", cloud)}}) == 200);
  const std::string not_cloud = R"({"object":"page"})";
  CHECK(post("/v1/providers/cloud_api/webhook", not_cloud, {{"X-Hub-Signature-256", "sha256=" + sb::hmac_hex(sb::HmacDigest::Sha256, "app-secret", not_cloud)}}) == 400);

  auto verify = http.Get("/v1/providers/cloud_api/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444");
  REQUIRE(verify);
  CHECK(verify->status == 200);
  CHECK(verify->body == "1158201444");
  auto refused = http.Get("/v1/providers/cloud_api/webhook?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1");
  REQUIRE(refused);
  CHECK(refused->status == 403);

  // Nothing reached sb.callbacks but the verified, well-formed facts of known sessions (none here).
  sbtest::TopicReader reader(stack.config, stack.config.topic("sb.callbacks"));
  reader.read_until([](const auto&) { return false; }, 1000);
  CHECK(reader.records().empty());
}

TEST_CASE("sessions: sessions.not_working fail — a send to a session that is not WORKING fails at once with "
          "reason session_not_working",
          "[integration][sessions]") {
  TestStack stack("sessions_fail");
  System sys(stack, "fail");
  auto tenant = stack.create_tenant("acme", {});
  httplib::Client api("127.0.0.1", sys.intake_port);
  REQUIRE(sbtest::call(api, "POST", "/v1/sessions", tenant.api_key, json{{"id", "s1"}, {"provider", "engine"}, {"start", false}}.dump()).status == 201);
  auto sent = sbtest::call(api, "POST", "/v1/sessions/s1/messages", tenant.api_key, json{{"to", "+15557654321"}, {"text", "too early"}}.dump());
  REQUIRE(sent.status == 202);
  const std::string id = sent.body["id"];
  REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["status"] == "failed"; }, 20000));
  CHECK(sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["error"].get<std::string>().rfind("session_not_working", 0) == 0);
  auto failed = events(stack.config, "message.failed", [&](const std::vector<json>& v) {
    for (const auto& e : v)
      if (e["data"]["message_id"] == id) return true;
    return false;
  });
  REQUIRE(failed.size() == 1);
  CHECK(failed[0]["data"]["reason"] == "session_not_working");
}

TEST_CASE("sessions: a Cloud API session end to end — start checks the number, send → sent → delivered → read, "
          "inbound, the token never shown",
          "[integration][sessions][cloud_api]") {
  TestStack stack("sessions_cloud");
  System sys(stack);
  auto tenant = stack.create_tenant("acme", {});
  httplib::Client api("127.0.0.1", sys.intake_port);
  // Meta's handshake against our intake, performed by the simulator.
  auto verify = sim_post(sys.sim_port, "/sim/cloud_api/verify", json::object());
  CHECK(verify["ok"] == true);

  auto created = sbtest::call(api, "POST", "/v1/sessions", tenant.api_key,
                              json{{"id", "biz"}, {"provider", "cloud_api"},
                                   {"config", {{"phone_number_id", "106540352242922"}, {"access_token", "EAAG-test-token"}}}}.dump());
  INFO(created.body.dump());
  REQUIRE(created.status == 201);
  CHECK(created.body.dump().find("EAAG-test-token") == std::string::npos);
  REQUIRE(sbtest::eventually([&] { return status_is(api, tenant.api_key, "biz", "WORKING"); }, 20000));
  auto s = session_of(api, tenant.api_key, "biz");
  CHECK(s.dump().find("EAAG-test-token") == std::string::npos);
  const std::string account = s["account"];
  CHECK_FALSE(account.empty());
  // The token is sealed in PostgreSQL, not stored in clear.
  sb::pg::Pool pool(stack.config.postgres);
  auto stored = pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec1("SELECT config::text || coalesce(secrets, '') FROM sessions WHERE name = 'biz'")[0].as<std::string>();
  });
  CHECK(stored.find("EAAG-test-token") == std::string::npos);

  auto sent = sbtest::call(api, "POST", "/v1/sessions/biz/messages", tenant.api_key, json{{"to", "+15557654321"}, {"text", "hello cloud"}}.dump());
  REQUIRE(sent.status == 202);
  const std::string id = sent.body["id"];
  REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["status"] == "read"; }, 20000));
  auto m = sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body;
  CHECK(m["provider_message_id"].get<std::string>().rfind("wamid.", 0) == 0);
  auto read = events(stack.config, "message.read", [&](const std::vector<json>& v) {
    for (const auto& e : v)
      if (e["data"]["message_id"] == id) return true;
    return false;
  });
  CHECK_FALSE(read.empty());

  sim_post(sys.sim_port, "/sim/inbound", {{"to", account}, {"from", "15550002222"}, {"text", "hola"}});
  auto in = events(stack.config, "message.received", [&](const std::vector<json>& v) {
    for (const auto& e : v)
      if (e["session"] == "biz") return true;
    return false;
  });
  REQUIRE_FALSE(in.empty());
  CHECK(in.back()["data"]["from"] == "+15550002222");
  CHECK(in.back()["data"]["text"] == "hola");
  // The same number can't be a second session's.
  CHECK(sbtest::call(api, "POST", "/v1/sessions", tenant.api_key,
                     json{{"id", "biz2"}, {"provider", "cloud_api"},
                          {"config", {{"phone_number_id", "106540352242922"}, {"access_token", "x"}}}}.dump())
            .status == 409);
}
