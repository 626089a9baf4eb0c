// 1,000 engine sessions across 50 tenants, driven the way a user drives them: created through
// the API, each QR read from the API and scanned at the simulator, then a message on every
// session, each sent once and read. Counts come from independent records (the simulator's log
// of what it was asked to send, PostgreSQL), not from the system's counters.
#include <catch2/catch.hpp>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <map>
#include <thread>

#include "intake_api.hpp"
#include "session_system.hpp"
#include "stack.hpp"
#include "switchboard/core/pg.hpp"

using nlohmann::json;
using sbtest::TestStack;

namespace {
constexpr int kTenants = 50, kSessionsPerTenant = 20, kClients = 8;

// Runs f(i) for i in [0, n) on kClients threads, each with its own intake connection. f returns
// "" or what went wrong; assertions stay on the test's thread (Catch2's aren't thread-safe).
std::vector<std::string> in_parallel(int n, int port, const std::function<std::string(httplib::Client&, int)>& f) {
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t)
    threads.emplace_back([&] {
      httplib::Client api("127.0.0.1", port);
      api.set_keep_alive(true);
      for (int i = next++; i < n; i = next++)
        if (auto what = f(api, i); !what.empty()) {
          std::lock_guard lock(mu);
          failures.push_back(std::move(what));
        }
    });
  for (auto& t : threads) t.join();
  return failures;
}

// The QR a session shows now, once it differs from `not_this` ("" if none within the timeout).
std::string shown_qr(httplib::Client& api, const std::string& key, const std::string& id, const std::string& not_this) {
  std::string value;
  sbtest::eventually([&] {
    auto r = sbtest::call(api, "GET", "/v1/sessions/" + id + "/qr", key);
    if (r.status != 200) return false;
    value = r.body["value"];
    return value != not_this;
  }, 60000, 100);
  return value == not_this ? "" : value;
}

std::map<std::string, long> count_by(const sb::Config& config, const std::string& sql) {
  sb::pg::Pool pool(config.postgres);
  return pool.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::map<std::string, long> out;
    for (const auto& row : tx.exec(sql)) out[row[0].as<std::string>()] = row[1].as<long>();
    return out;
  });
}
}  // namespace

TEST_CASE("sessions at scale: 1,000 engine sessions across 50 tenants paired through the API, each sends once and is read",
          "[integration][sessions][scale]") {
  TestStack stack("sessions_scale");
  sbtest::SessionSystem sys(stack, "hold", [](sb::Config& c) {
    c.simulator.engine.start_delay_ms = 20;
    c.simulator.delivered_delay_ms = 20;
    c.simulator.read_delay_ms = 20;
    c.log.level = "warn";  // 1,000 sessions' lifecycles: keep the logs to what matters
    c.engine.nodes["sim"].capacity = kTenants * kSessionsPerTenant;  // one node holds them all
  });
  std::vector<sbtest::TenantInfo> tenants;
  for (int t = 0; t < kTenants; ++t) tenants.push_back(stack.create_tenant("t" + std::to_string(t), {}));
  const int n = kTenants * kSessionsPerTenant;
  auto tenant_of = [&](int i) -> const sbtest::TenantInfo& { return tenants[i % kTenants]; };
  auto name_of = [&](int i) { return "s" + std::to_string(i / kTenants); };
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds_since = [](auto t) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(); };

  auto created = in_parallel(n, sys.intake_port, [&](httplib::Client& api, int i) -> std::string {
    auto r = sbtest::call(api, "POST", "/v1/sessions", tenant_of(i).api_key, json{{"id", name_of(i)}, {"provider", "engine"}}.dump());
    return r.status == 201 ? "" : "create " + name_of(i) + ": " + std::to_string(r.status) + " " + r.body.dump();
  });
  INFO((created.empty() ? "" : created.front()));
  REQUIRE(created.empty());
  // Each QR as a user sees it, scanned at the "phone" (the simulator). As a person would: a QR
  // that rotated between showing and scanning is refused (404), so scan the one shown next.
  auto scanned = in_parallel(n, sys.intake_port, [&](httplib::Client& api, int i) -> std::string {
    httplib::Client phone("127.0.0.1", sys.sim_port);
    std::string qr;
    for (int attempt = 0; attempt < 5; ++attempt) {
      qr = shown_qr(api, tenant_of(i).api_key, name_of(i), qr);
      if (qr.empty()) return "session " + name_of(i) + " of " + tenant_of(i).name + ": no (new) QR shown within 60 s";
      auto r = phone.Post("/sim/scan", json{{"qr", qr}}.dump(), "application/json");
      if (!r) return "/sim/scan: no answer";
      if (r->status == 200) return "";
      if (r->status != 404) return "/sim/scan: " + std::to_string(r->status) + " " + r->body;
    }
    return "session " + name_of(i) + ": five QRs it showed were refused";
  });
  INFO(scanned.size() << " failures, e.g. " << (scanned.empty() ? "" : scanned.front()));
  REQUIRE(scanned.empty());
  REQUIRE(sbtest::eventually([&] {
    return count_by(stack.config, "SELECT status, count(*) FROM sessions GROUP BY status")["WORKING"] == n;
  }, 120000, 250));
  const double paired_s = seconds_since(t0);

  // Every session is WORKING in the API too (each tenant lists its own 20).
  {
    httplib::Client api("127.0.0.1", sys.intake_port);
    for (const auto& t : tenants) {
      auto list = sbtest::call(api, "GET", "/v1/sessions", t.api_key).body["sessions"];
      CHECK(list.size() == static_cast<std::size_t>(kSessionsPerTenant));
      for (const auto& s : list) CHECK(s["status"] == "WORKING");
    }
  }

  const auto t1 = std::chrono::steady_clock::now();
  auto queued = in_parallel(n, sys.intake_port, [&](httplib::Client& api, int i) -> std::string {
    auto r = sbtest::call(api, "POST", "/v1/sessions/" + name_of(i) + "/messages", tenant_of(i).api_key,
                          json{{"to", "+1555" + std::to_string(1000000 + i)}, {"text", "scale " + std::to_string(i)}}.dump());
    return r.status == 202 ? "" : "send on " + name_of(i) + ": " + std::to_string(r.status) + " " + r.body.dump();
  });
  INFO((queued.empty() ? "" : queued.front()));
  REQUIRE(queued.empty());
  REQUIRE(sbtest::eventually([&] { return count_by(stack.config, "SELECT status, count(*) FROM messages GROUP BY status")["read"] == n; },
                             120000, 250));
  const double sent_s = seconds_since(t1);

  // The provider was asked once per message (its own log), and every message has each status once.
  httplib::Client simlog("127.0.0.1", sys.sim_port);
  auto log = simlog.Get("/sim/log");
  REQUIRE(log);
  REQUIRE(log->status == 200);
  std::map<std::string, int> sends_per_text;
  const auto sends = json::parse(log->body);  // kept alive: a range over a temporary's member dangles
  for (const auto& s : sends["sends"]) ++sends_per_text[s["text"].get<std::string>()];
  CHECK(sends_per_text.size() == static_cast<std::size_t>(n));
  for (const auto& [text, count] : sends_per_text) CHECK(count == 1);
  auto per_status = count_by(stack.config, "SELECT status, count(*) FROM message_status_history GROUP BY status");
  CHECK(per_status["sent"] == n);
  CHECK(per_status["delivered"] == n);
  CHECK(per_status["read"] == n);
  WARN("1,000 sessions: created and paired in " << paired_s << " s; 1,000 sends queued → read in " << sent_s << " s");
}
