// WhatsApp's reach-out time-lock (error 463), counted across worker replicas: three locks of one
// engine session within ten minutes pause it, even when no single worker process saw three.
// Real processes: the simulator as engine node, intake, the high and default lane workers (two
// processes), the callbacks worker; the simulator answers 463 to the session's next sends.
#include <catch2/catch.hpp>
#include <httplib.h>

#include "intake_api.hpp"
#include "session_system.hpp"
#include "stack.hpp"

using nlohmann::json;

namespace {

std::string reach_out_send(httplib::Client& api, const std::string& key, const std::string& session, const std::string& text,
                    const std::string& priority) {
  auto r = sbtest::call(api, "POST", "/v1/sessions/" + session + "/messages", key,
                        json{{"to", "+15557654321"}, {"text", text}, {"priority", priority}}.dump());
  INFO(r.body.dump());
  REQUIRE(r.status == 202);
  return r.body["id"];
}

std::string reach_out_message_status(httplib::Client& api, const std::string& key, const std::string& id) {
  return sbtest::call(api, "GET", "/v1/messages/" + id, key).body.value("status", "");
}

}  // namespace

TEST_CASE("pacing: three reach-out time-locks of a session across two worker replicas pause it (reach_out_timelock), "
          "counted in Redis, not per process",
          "[integration][pacing][reach_out]") {
  sbtest::TestStack stack("reach_out_locks");
  sbtest::SessionSystem sys(stack, "hold", [](sb::Config& c) {
    // One attempt per send: each message meets exactly one lock, so which process saw which is
    // known (high: the 1st, default: the 2nd and 3rd).
    c.worker.provider_attempts = 1;
  });
  auto tenant = stack.create_tenant("acme", {});
  httplib::Client api("127.0.0.1", sys.intake_port);
  const auto account = sbtest::pair_engine_session(api, tenant.api_key, sys.sim_port, "wa");
  CHECK(sbtest::sim_post(sys.sim_port, "/sim/reach_out_lock", {{"account", account}, {"sends", 3}})["sends"] == 3);

  // Lock 1 in worker-high, lock 2 in worker-default: each fails, the session keeps working.
  const auto first = reach_out_send(api, tenant.api_key, "wa", "lock one", "high");
  REQUIRE(sbtest::eventually([&] { return reach_out_message_status(api, tenant.api_key, first) == "failed"; }, 20000));
  const auto second = reach_out_send(api, tenant.api_key, "wa", "lock two", "default");
  REQUIRE(sbtest::eventually([&] { return reach_out_message_status(api, tenant.api_key, second) == "failed"; }, 20000));
  CHECK(sbtest::session_of(api, tenant.api_key, "wa")["status"] == "WORKING");

  // Lock 3, in worker-default again (its own second): the third within the window → PAUSED.
  // (Not on the high lane: the resume below travels there, and a send held at the head of the
  // session's queue in that lane would keep it waiting up to sessions.hold_max_s.)
  const auto third = reach_out_send(api, tenant.api_key, "wa", "lock three", "default");
  json s;
  REQUIRE(sbtest::eventually([&] {
    s = sbtest::session_of(api, tenant.api_key, "wa");
    return s["status"] == "PAUSED";
  }, 20000));
  CHECK(s["reason"] == "reach_out_timelock");
  // Nothing was sent, and the third send waits for the resume (sessions.not_working: hold).
  CHECK(sbtest::eventually([&] { return reach_out_message_status(api, tenant.api_key, third) == "queued"; }, 5000));
  auto events = sbtest::events(stack.config, "session.status", [](const std::vector<json>& v) {
    return std::any_of(v.begin(), v.end(), [](const json& e) { return e["data"]["status"] == "PAUSED"; });
  });
  const auto paused = std::find_if(events.begin(), events.end(), [](const json& e) { return e["data"]["status"] == "PAUSED"; });
  REQUIRE(paused != events.end());
  CHECK((*paused)["data"]["reason"] == "reach_out_timelock");
  httplib::Client sim("127.0.0.1", sys.sim_port);
  auto log = sim.Get("/sim/log");
  REQUIRE(log);
  CHECK(json::parse(log->body)["sends"].empty());

  // The engine's own status webhooks don't end the pause: its link blips (STARTING, then
  // WORKING, reported by webhook). The engine's word is kept as raw_status; the session stays
  // PAUSED with its reason and the held send still waits.
  CHECK(sbtest::sim_post(sys.sim_port, "/sim/reconnect", {{"account", account}})["session"].is_string());
  REQUIRE(sbtest::eventually([&] {
    s = sbtest::session_of(api, tenant.api_key, "wa");
    return s.value("raw_status", "") == "WORKING" || s["status"] != "PAUSED";
  }, 20000));
  CHECK(s["status"] == "PAUSED");
  CHECK(s["reason"] == "reach_out_timelock");
  CHECK(s.value("raw_status", "") == "WORKING");
  CHECK(reach_out_message_status(api, tenant.api_key, third) == "queued");

  // Resumed by API, the held send goes out once (the lock has run out).
  CHECK(sbtest::call(api, "POST", "/v1/sessions/wa/resume", tenant.api_key).status == 202);
  REQUIRE(sbtest::eventually([&] { return reach_out_message_status(api, tenant.api_key, third) == "sent"; }, 20000));
}
