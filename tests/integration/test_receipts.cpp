// Receipts without loss, against real processes: duplicate and out-of-order provider callbacks
// (the test plays the engine node, signing its webhooks with the node's HMAC key as WAHA does),
// and the race of a receipt that overtakes its send's outcome (a simulator whose webhooks go out
// before its HTTP answer).
#include <catch2/catch.hpp>
#include <httplib.h>

#include <set>

#include "intake_api.hpp"
#include "session_system.hpp"
#include "stack.hpp"
#include "switchboard/core/hmac.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/pg.hpp"

using nlohmann::json;
using sbtest::TestStack;

namespace {

std::string engine_name_of(const sb::Config& config, const std::string& session) {
  sb::pg::Pool pool(config.postgres);
  return pool.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params1("SELECT engine_name FROM sessions WHERE name = $1", session)[0].as<std::string>();
  });
}

// One WAHA webhook, signed as node "sim" signs them.
int post_webhook(int intake_port, const json& body) {
  const auto text = body.dump();
  httplib::Client intake("127.0.0.1", intake_port);
  auto r = intake.Post("/v1/providers/engine/sim/webhook",
                       {{"X-Webhook-Hmac", sb::hmac_hex(sb::HmacDigest::Sha512, "node-hmac-key", text)},
                        {"X-Webhook-Hmac-Algorithm", "sha512"}},
                       text, "application/json");
  return r ? r->status : -1;
}

// A message.ack webhook for `pmid`.
int post_ack(int intake_port, const std::string& event_id, const std::string& engine_session, const std::string& pmid,
             int level, const char* name, int64_t timestamp_ms) {
  return post_webhook(intake_port, {{"id", event_id},
                                    {"timestamp", timestamp_ms},
                                    {"event", "message.ack"},
                                    {"session", engine_session},
                                    {"payload", {{"id", pmid}, {"fromMe", true}, {"ack", level}, {"ackName", name}}},
                                    {"engine", "WEBJS"}});
}

std::vector<std::string> statuses_of(const json& message) {
  std::vector<std::string> out;
  for (const auto& h : message["history"]) out.push_back(h["status"]);
  return out;
}

std::vector<json> for_message(const std::vector<json>& events, const std::string& id) {
  std::vector<json> out;
  for (const auto& e : events)
    if (e["data"]["message_id"] == id) out.push_back(e);
  return out;
}

}  // namespace

TEST_CASE("receipts: duplicate and out-of-order callbacks — status never goes backwards, each status recorded once, "
          "a late delivered in history only",
          "[integration][sessions][receipts]") {
  TestStack stack("receipts_order");
  // The simulator reports only SERVER acks: every later receipt comes from this test.
  sbtest::SessionSystem sys(stack, "hold", [](sb::Config& c) {
    c.simulator.delivered_delay_ms = 0;
    c.simulator.read_delay_ms = 0;
  });
  auto tenant = stack.create_tenant("acme", {});
  httplib::Client api("127.0.0.1", sys.intake_port);
  sbtest::Receiver receiver;
  REQUIRE(sbtest::call(api, "POST", "/v1/webhooks", tenant.api_key, json{{"url", receiver.url()}, {"events", {"message.*"}}}.dump())
              .status == 201);
  sbtest::pair_engine_session(api, tenant.api_key, sys.sim_port, "s1");

  auto sent = sbtest::call(api, "POST", "/v1/sessions/s1/messages", tenant.api_key, json{{"to", "+15557654321"}, {"text", "hello"}}.dump());
  REQUIRE(sent.status == 202);
  const std::string id = sent.body["id"];
  REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["status"] == "sent"; }, 20000));
  const std::string pmid = sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["provider_message_id"];
  const auto engine_session = engine_name_of(stack.config, "s1");
  // The simulator's own SERVER ack for the send is counted first, so it can't stand in for ours.
  REQUIRE(sbtest::eventually([&] { return sbtest::metric(sys.callbacks_ops_port, "switchboard_callbacks_receipts_total") >= 1; }, 20000));
  const double before = sbtest::metric(sys.callbacks_ops_port, "switchboard_callbacks_receipts_total");

  // READ overtakes DEVICE; then both come again (one under the same event id, one under a new one).
  const int64_t t0 = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(post_ack(sys.intake_port, "evt_read", engine_session, pmid, 3, "READ", t0 + 2000) == 200);
  CHECK(post_ack(sys.intake_port, "evt_device", engine_session, pmid, 2, "DEVICE", t0 + 1000) == 200);
  CHECK(post_ack(sys.intake_port, "evt_read", engine_session, pmid, 3, "READ", t0 + 2000) == 200);
  CHECK(post_ack(sys.intake_port, "evt_device_again", engine_session, pmid, 2, "DEVICE", t0 + 1500) == 200);
  // Then an inbound message: its message.received lands on sb.events after anything the receipts
  // above caused (one partition per tenant, applied and published in order) — the marker to
  // read up to.
  CHECK(post_webhook(sys.intake_port, {{"id", "evt_marker"},
                                       {"timestamp", t0 + 3000},
                                       {"event", "message"},
                                       {"session", engine_session},
                                       {"payload", {{"id", "false_15550009999@c.us_MARKER"}, {"from", "15550009999@c.us"},
                                                    {"fromMe", false}, {"body", "marker"}}},
                                       {"engine", "WEBJS"}}) == 200);
  // Wait until the callbacks worker applied all four (its counter), not for a guessed time.
  REQUIRE(sbtest::eventually([&] { return sbtest::metric(sys.callbacks_ops_port, "switchboard_callbacks_receipts_total") >= before + 4; }, 20000));

  auto m = sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body;
  INFO(m.dump());
  CHECK(m["status"] == "read");
  const auto history = statuses_of(m);
  CHECK(std::count(history.begin(), history.end(), "delivered") == 1);
  CHECK(std::count(history.begin(), history.end(), "read") == 1);
  // History is in provider time: delivered (t0+1 s, the first DEVICE) before read (t0+2 s).
  const auto d = std::find(history.begin(), history.end(), "delivered"), r = std::find(history.begin(), history.end(), "read");
  CHECK(d < r);

  // sb.events: message.read for this message under one event id; no message.delivered (late).
  auto reads = for_message(sbtest::events(stack.config, "message.read",
                                          [&](const auto& v) { return !for_message(v, id).empty(); }),
                           id);
  REQUIRE_FALSE(reads.empty());
  std::set<std::string> read_ids;
  for (const auto& e : reads) read_ids.insert(e["id"]);
  CHECK(read_ids.size() == 1);
  {
    sbtest::TopicReader reader(stack.config, stack.config.topic("sb.events"));
    std::vector<json> all;
    REQUIRE(reader.read_until([&](const auto& records) {
      all.clear();
      for (const auto& r : records) all.push_back(json::parse(sb::kafka::value_of(r.get())));
      return std::any_of(all.begin(), all.end(), [](const json& e) { return e["type"] == "message.received"; });
    }, 20000));
    for (const auto& e : all) CHECK_FALSE((e["type"] == "message.delivered" && e["data"]["message_id"] == id));
  }
  // The endpoint saw message.read for it under that one event id.
  REQUIRE(sbtest::eventually([&] { return !for_message(receiver.of_type("message.read"), id).empty(); }, 20000));
  for (const auto& e : for_message(receiver.of_type("message.read"), id)) CHECK(e["id"] == *read_ids.begin());
  CHECK(for_message(receiver.of_type("message.delivered"), id).empty());
}

TEST_CASE("receipts: a receipt that arrives before its send's outcome is recorded waits for it and is not lost",
          "[integration][sessions][receipts]") {
  TestStack stack("receipts_race");
  // The engine's webhooks (SERVER, DEVICE, READ) go out 1.5 s before its answer to sendText.
  sbtest::SessionSystem sys(stack, "hold", [](sb::Config& c) {
    c.simulator.receipts_before_reply_ms = 1500;
    c.simulator.delivered_delay_ms = 10;
    c.simulator.read_delay_ms = 10;
  });
  auto tenant = stack.create_tenant("acme", {});
  httplib::Client api("127.0.0.1", sys.intake_port);
  sbtest::pair_engine_session(api, tenant.api_key, sys.sim_port, "s1");
  const double waits_before = sbtest::metric(sys.callbacks_ops_port, "switchboard_callbacks_unmatched_waits_total");

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto sent = sbtest::call(api, "POST", "/v1/sessions/s1/messages", tenant.api_key,
                             json{{"to", "+1555765432" + std::to_string(i)}, {"text", "race " + std::to_string(i)}}.dump());
    REQUIRE(sent.status == 202);
    ids.push_back(sent.body["id"]);
  }
  for (const auto& id : ids) {
    REQUIRE(sbtest::eventually([&] { return sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body["status"] == "read"; }, 30000));
    const auto history = statuses_of(sbtest::call(api, "GET", "/v1/messages/" + id, tenant.api_key).body);
    INFO(id);
    CHECK(std::count(history.begin(), history.end(), "sent") == 1);
    CHECK(std::count(history.begin(), history.end(), "delivered") == 1);
    CHECK(std::count(history.begin(), history.end(), "read") == 1);
  }
  // The receipts really did come first: they waited for the outcome (the worker's counter), and
  // each message's delivered and read events are on sb.events.
  CHECK(sbtest::metric(sys.callbacks_ops_port, "switchboard_callbacks_unmatched_waits_total") >= waits_before + 2 * ids.size());
  auto delivered = sbtest::events(stack.config, "message.delivered", [&](const auto& v) {
    for (const auto& id : ids)
      if (for_message(v, id).empty()) return false;
    return true;
  });
  auto read = sbtest::events(stack.config, "message.read", [&](const auto& v) {
    for (const auto& id : ids)
      if (for_message(v, id).empty()) return false;
    return true;
  });
  for (const auto& id : ids) {
    CHECK(for_message(delivered, id).size() == 1);
    CHECK(for_message(read, id).size() == 1);
  }
}
