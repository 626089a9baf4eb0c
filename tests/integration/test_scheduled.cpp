// Scheduled sends (send_at) end to end with real processes: intake stores them, its scheduler
// releases them to the lanes when due, workers send them to the simulator; the simulator's
// receive times are compared with each message's send_at. Includes cancel, and schedulers and
// workers SIGKILLed at the due time.
#include <signal.h>

#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "intake_api.hpp"
#include "stack.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/pg.hpp"

using nlohmann::json;
using sbtest::Child;
using sbtest::TestStack;

using sbtest::now_ms;

namespace {


std::string rfc3339_ms(int64_t ms) { return sb::to_rfc3339(sb::Clock::time_point(std::chrono::milliseconds(ms))); }

// The simulator's arrivals: text → receive times (every arrival, repeats included).
std::map<std::string, std::vector<int64_t>> arrivals(int sim_port) {
  httplib::Client sim("127.0.0.1", sim_port);
  auto r = sim.Get("/sim/log");
  REQUIRE(r);
  INFO("GET /sim/log: " << r->status << " " << r->body.substr(0, 300));
  REQUIRE(r->status == 200);
  std::map<std::string, std::vector<int64_t>> out;
  const auto doc = json::parse(r->body);  // named: a range-for over a temporary's member would dangle
  for (const auto& s : doc["sends"]) out[s["text"].get<std::string>()].push_back(s["at_ms"].get<int64_t>());
  return out;
}


bool healthy(int port, const char* path) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get(path);
  return r && r->status == 200;
}

// Workers of every lane, each waited for until it owns partitions (so a due time is not spent
// joining the group).
std::vector<Child> start_workers(TestStack& stack, const std::string& label) {
  std::vector<Child> out;
  for (const char* lane : sb::kLanes) out.push_back(stack.spawn(label + "-" + lane, {"worker", "--lane", lane}));
  for (auto& w : out) REQUIRE(sbtest::eventually([&] { return w.log().find("worker.assigned") != std::string::npos; }, 60000, 100));
  return out;
}

struct Scheduled {
  std::string id, text;
};

// Posts n messages due at `due_ms` across the tenant's sessions and lanes, from 8 connections
// at once (each scheduled message is its own commit: in parallel they share fsyncs).
std::vector<Scheduled> schedule(int intake_port, const sbtest::TenantInfo& tenant, const std::vector<std::string>& sessions,
                                int n, int64_t due_ms, const std::string& tag) {
  std::vector<Scheduled> out(n);
  std::atomic<int> next{0}, refused{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t)
    pool.emplace_back([&] {
      httplib::Client http("127.0.0.1", intake_port);
      http.set_keep_alive(true);
      http.set_read_timeout(30, 0);
      for (int i = next++; i < n; i = next++) {
        const std::string text = tag + " " + std::to_string(i);
        json body = {{"to", "+1555000" + std::to_string(1000 + i)}, {"text", text}, {"priority", sb::kLanes[i % 3]},
                     {"send_at", rfc3339_ms(due_ms)}};
        auto r = http.Post(("/v1/sessions/" + sessions[i % sessions.size()] + "/messages").c_str(), sbtest::bearer(tenant.api_key),
                           body.dump(), "application/json");
        if (!r || r->status != 202 || json::parse(r->body)["status"] != "scheduled") {
          ++refused;
          continue;
        }
        out[i] = {json::parse(r->body)["id"], text};
      }
    });
  for (auto& t : pool) t.join();
  REQUIRE(refused == 0);
  return out;
}

}  // namespace

TEST_CASE("scheduled: 300 messages due at the same second are sent once each, on time, and the cancelled ones never",
          "[integration][scheduled]") {
  TestStack stack("scheduled-burst", 6);
  std::vector<std::string> sessions;  // 30 sessions of 10: a session sends one at a time, in order
  for (int i = 0; i < 30; ++i) sessions.push_back("s" + std::to_string(i));
  auto tenant = stack.create_tenant("sched", sessions);
  const int sim_port = sbtest::free_port(), intake_port = sbtest::free_port();
  stack.config.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
  stack.config.simulator.latency_ms = 2;
  stack.config.simulator.latency_jitter_ms = 2;
  stack.config.provider.url = "http://127.0.0.1:" + std::to_string(sim_port);
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(intake_port);
  stack.write_config();
  auto sim = stack.spawn("simulator", {"simulator"});
  auto intake = stack.spawn("intake", {"intake"});
  REQUIRE(sbtest::eventually([&] { return healthy(sim_port, "/health"); }, 15000));
  REQUIRE(sbtest::eventually([&] { return healthy(intake_port, "/health/ready"); }, 30000));
  auto workers = start_workers(stack, "w");

  // Due at the start of a whole second a few seconds ahead: every message the same instant.
  const int64_t due_ms = (now_ms() / 1000 + 8) * 1000;
  const int64_t t0 = now_ms();
  auto msgs = schedule(intake_port, tenant, sessions, 300, due_ms, "burst");
  WARN("scheduling 300 messages over 8 connections took " << now_ms() - t0 << " ms");
  httplib::Client http("127.0.0.1", intake_port);

  // A scheduled message reads back as such, with its send_at.
  auto got = sbtest::call(http, "GET", "/v1/messages/" + msgs[0].id, tenant.api_key);
  CHECK(got.status == 200);
  CHECK(got.body["status"] == "scheduled");
  CHECK(got.body["send_at"] == rfc3339_ms(due_ms));
  // Bad times are refused with the field named.
  auto bad = sbtest::call(http, "POST", "/v1/sessions/s0/messages", tenant.api_key,
                          json{{"to", "+15551230000"}, {"text", "x"}, {"send_at", "2026-02-30T10:00:00Z"}}.dump());
  CHECK(bad.status == 422);
  CHECK(bad.body["field"] == "send_at");
  auto far = sbtest::call(http, "POST", "/v1/sessions/s0/messages", tenant.api_key,
                          json{{"to", "+15551230000"}, {"text", "x"}, {"send_at", rfc3339_ms(now_ms() + 200LL * 86400000)}}.dump());
  CHECK(far.status == 422);

  // Cancel every 30th: 200, and a second cancel is 409 (it is cancelled, not scheduled).
  std::set<std::string> cancelled;
  for (std::size_t i = 0; i < msgs.size(); i += 30) {
    auto c = sbtest::call(http, "DELETE", "/v1/messages/" + msgs[i].id, tenant.api_key);
    REQUIRE(c.status == 200);
    CHECK(c.body["status"] == "cancelled");
    cancelled.insert(msgs[i].text);
  }
  CHECK(sbtest::call(http, "DELETE", "/v1/messages/" + msgs[0].id, tenant.api_key).status == 409);
  CHECK(sbtest::call(http, "DELETE", "/v1/messages/" + sb::new_uuid_v7(), tenant.api_key).status == 404);
  auto other = stack.create_tenant("other");  // another tenant's message is not found, not cancelled
  CHECK(sbtest::call(http, "DELETE", "/v1/messages/" + msgs[1].id, other.api_key).status == 404);
  REQUIRE(now_ms() < due_ms - 300);  // the checks below mean something only before the due time
  CHECK(arrivals(sim_port).empty());  // nothing went early

  const std::size_t expected = msgs.size() - cancelled.size();
  REQUIRE(sbtest::eventually([&] {
    auto st = sbtest::message_statuses(stack.config);
    std::size_t sent = 0;
    for (const auto& [id, s] : st) sent += (s == "sent" || s == "delivered" || s == "read");
    return sent == expected;
  }, 30000, 100));
  const auto seen = arrivals(sim_port);
  int64_t worst = 0;
  for (const auto& m : msgs) {
    auto it = seen.find(m.text);
    if (cancelled.count(m.text)) {
      CHECK(it == seen.end());
      continue;
    }
    INFO(m.text << " (" << m.id << ") not among the simulator's " << seen.size() << " distinct arrivals");
    REQUIRE(it != seen.end());
    CHECK(it->second.size() == 1);  // once
    CHECK(it->second.front() >= due_ms);  // never early
    worst = std::max(worst, it->second.front() - due_ms);
  }
  // The scheduler's own lateness: when each message was released to its lane ('queued' in its
  // history, PostgreSQL's clock) after its send_at.
  sb::pg::Pool pool(stack.config.postgres);
  const double released_late_s = pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec("SELECT COALESCE(EXTRACT(EPOCH FROM max(h.at - m.send_at)), -1)::float8 FROM messages m "
                   "JOIN message_status_history h ON h.message_id = m.id AND h.status = 'queued'")[0][0].as<double>();
  });
  WARN("scheduled burst: " << expected << " messages due at the same instant: the last released to its lane "
                           << static_cast<int>(released_late_s * 1000) << " ms after its send_at (scheduler.poll_interval_ms 200), "
                           << "the last received by the simulator " << worst << " ms after it");
  CHECK(released_late_s >= 0);
  CHECK(released_late_s <= 1.5);  // a poll interval plus one batch's publish, with room for this shared box
  CHECK(worst <= 15000);          // plus the lane's own throughput: 30 sessions of 10 sends each, one at a time
  // Once sent, too late to cancel.
  auto late = sbtest::call(http, "DELETE", "/v1/messages/" + msgs[1].id, tenant.api_key);
  CHECK(late.status == 409);
  auto st = sbtest::message_statuses(stack.config);
  for (const auto& m : msgs)
    if (cancelled.count(m.text)) CHECK(st[m.id] == "cancelled");
}

TEST_CASE("scheduled: a scheduler and the lane workers SIGKILLed at the due time: every message sent once, on time",
          "[integration][scheduled][failover]") {
  TestStack stack("scheduled-kill", 6);
  stack.config.kafka.librdkafka["session.timeout.ms"] = "3000";
  stack.config.kafka.librdkafka["heartbeat.interval.ms"] = "500";
  const std::vector<std::string> sessions = {"s0", "s1", "s2", "s3"};
  auto tenant = stack.create_tenant("sched", sessions);
  const int sim_port = sbtest::free_port(), a_port = sbtest::free_port(), b_port = sbtest::free_port();
  stack.config.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
  stack.config.simulator.latency_ms = 2;
  stack.config.simulator.latency_jitter_ms = 2;
  stack.config.provider.url = "http://127.0.0.1:" + std::to_string(sim_port);
  // Small batches: the kill is likely to land while a scheduler holds released-but-uncommitted rows.
  stack.config.scheduler.batch_max = 20;
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(a_port);
  stack.write_config();
  auto sim = stack.spawn("simulator", {"simulator"});
  auto intake_a = stack.spawn("intake-a", {"intake"});
  // A reads the config file as it starts: B's listen address goes in only once A is up.
  REQUIRE(sbtest::eventually([&] { return healthy(a_port, "/health/ready"); }, 30000));
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(b_port);
  stack.write_config();
  auto intake_b = stack.spawn("intake-b", {"intake"});
  REQUIRE(sbtest::eventually([&] { return healthy(sim_port, "/health"); }, 15000));
  REQUIRE(sbtest::eventually([&] { return healthy(b_port, "/health/ready"); }, 30000));
  auto first = start_workers(stack, "first");
  auto second = start_workers(stack, "second");

  const int64_t due_ms = (now_ms() / 1000 + 7) * 1000;
  auto msgs = schedule(a_port, tenant, sessions, 200, due_ms, "kill");
  REQUIRE(now_ms() < due_ms - 200);  // all stored before they are due
  // At the due time: scheduler A (with intake A) and the first workers die; B and the second
  // workers carry on, and a third set of workers joins (another rebalance).
  while (now_ms() < due_ms + 30) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  intake_a.signal(SIGKILL);
  for (auto& w : first) w.signal(SIGKILL);
  CHECK(intake_a.wait(5000) == 128 + SIGKILL);
  for (auto& w : first) CHECK(w.wait(5000) == 128 + SIGKILL);
  auto third = start_workers(stack, "third");

  REQUIRE(sbtest::eventually([&] {
    auto st = sbtest::message_statuses(stack.config);
    std::size_t done = 0;
    for (const auto& [id, s] : st) done += (s == "sent" || s == "delivered" || s == "read");
    return done == msgs.size();
  }, 60000, 100));
  const auto seen = arrivals(sim_port);
  int64_t worst = 0;
  for (const auto& m : msgs) {
    auto it = seen.find(m.text);
    INFO(m.text << " (" << m.id << ") not among the simulator's " << seen.size() << " distinct arrivals");
    REQUIRE(it != seen.end());
    CHECK(it->second.size() == 1);
    CHECK(it->second.front() >= due_ms);
    worst = std::max(worst, it->second.front() - due_ms);
  }
  WARN("scheduled with kills: " << msgs.size() << " messages, scheduler + workers SIGKILLed 30 ms after send_at: last received "
                                << worst << " ms after its send_at (session.timeout.ms 3000)");
  // Bound: the consumer group's failover (session timeout 3 s) plus a scheduler poll and a rebalance.
  CHECK(worst <= 15000);
  httplib::Client sim_http("127.0.0.1", sim_port);
  auto stats = sim_http.Get("/v1/stats");
  REQUIRE(stats);
  CHECK(json::parse(stats->body)["duplicates"] == 0);
}
