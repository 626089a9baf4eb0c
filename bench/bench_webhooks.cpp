// Webhook dispatcher benchmarks with a same-run baseline (see bench/README.md).
//
//   baseline     plain keep-alive HTTP clients POST an event-sized, signed body straight to the
//                loopback receiver (no Kafka, no dispatcher): what the receiver can take
//   throughput   a backlog of events pre-published to sb.events, then `switchboard webhooks`
//                started: deliveries/s from its first to its last delivery (start-up reported
//                apart), for 1 endpoint, 100 and 1,000 endpoints (one tenant each), and one
//                tenant whose 100 endpoints all get every event
//   latency      with the dispatcher running, events published at a steady rate: per delivery,
//                receive time − publish time (p50/p99)
//   isolation    one tenant, 20 endpoints, half of them hanging past webhooks.timeout_ms:
//                healthy deliveries' p99 vs the same run with nothing hanging
//
// Knobs: SB_BENCH_WEBHOOK_DELIVERIES (backlog per scenario, 20000), SB_BENCH_WEBHOOK_RATE (live
// deliveries/s, 600), SB_BENCH_WEBHOOK_LIVE_S (10), SB_BENCH_WEBHOOK_ISOLATION_S (15),
// SB_BENCH_WEBHOOK_ISOLATION_RATE (deliveries/s offered to the 20 endpoints, 500),
// SB_BENCH_WEBHOOK_TIMEOUT_MS (5000), SB_BENCH_WEBHOOK_CONNECTIONS (baseline clients, 16),
// SB_BENCH_WEBHOOK_TIMELINE=1 (deliveries per second).
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.hpp"
#include "receiver.hpp"
#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/webhook_request.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using sbbench::percentile;
using sbbench::Receiver;

namespace {

std::string fixed(double v, int decimals) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(decimals);
  s << v;
  return s.str();
}

std::string event_json(const std::string& tenant, const std::string& id) {
  json event = {{"id", id},
                {"type", "message.sent"},
                {"tenant", tenant},
                {"session", "main"},
                {"occurred_at", sb::now_rfc3339()},
                {"data", {{"message_id", sb::new_uuid_v7()}, {"provider_message_id", "p-1"}, {"to", "+15550100"}}}};
  return event.dump();
}

// Publishes without waiting for the ack (a steady rate needs that); returns the event id.
std::string publish(sb::kafka::Producer& producer, const std::string& topic, const std::string& tenant,
                    std::atomic<int>& failures) {
  std::string id = sb::new_uuid_v7();
  producer.produce(topic, tenant, event_json(tenant, id), {}, [&failures](const sb::kafka::DeliveryResult& r) {
    if (!r.ok()) ++failures;
  });
  return id;
}

void tune(sbtest::TestStack& stack) {
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";  // the receiver is on loopback
  stack.config.log.level = "warn";
  stack.write_config();
}

// Tenants straight into the table (one statement), faster than create_tenant for 1,000.
std::vector<std::string> insert_tenants(sbtest::TestStack& stack, int count) {
  std::vector<std::string> ids;
  std::string sql = "INSERT INTO tenants (id, name) VALUES ";
  for (int i = 0; i < count; ++i) {
    ids.push_back(sb::new_uuid_v7());
    sql += (i ? ",('" : "('") + ids.back() + "','bench-" + std::to_string(i) + "')";
  }
  sb::pg::Pool pool(stack.config.postgres);
  pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec(sql);
    tx.commit();
    return 0;
  });
  return ids;
}

void add_endpoint(sb::WebhookStore& store, const std::string& tenant, const std::string& url) {
  sb::WebhookEndpoint e;
  e.tenant_id = tenant;
  e.url = url;
  e.events = {"*"};
  e.secret = sb::new_webhook_secret();
  store.create(e);
}

// The receiver's raw rate: `connections` keep-alive clients POST `total` requests of an event's
// size with the dispatcher's headers (signed once; signing is the dispatcher's cost, not the
// receiver's). Measured once per process, on a receiver like the scenarios'.
double baseline_rate() {
  static double rate = [] {
    const int connections = env_int("SB_BENCH_WEBHOOK_CONNECTIONS", 16);
    const int total = env_int("SB_BENCH_WEBHOOK_DELIVERIES", 20000);
    Receiver rx;
    const std::string id = sb::new_uuid_v7();
    const std::string body = event_json(sb::new_uuid_v7(), id);
    sb::WebhookEndpoint endpoint;
    endpoint.secret = sb::new_webhook_secret();
    httplib::Headers headers;
    for (const auto& [k, v] : sb::webhook_headers(endpoint, id, body, std::chrono::system_clock::now()))
      if (k != "content-type") headers.emplace(k, v);
    std::atomic<int> next{0}, failed{0};
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    for (int c = 0; c < connections; ++c)
      pool.emplace_back([&, c] {
        httplib::Client http("127.0.0.1", rx.port());
        http.set_keep_alive(true);
        http.set_tcp_nodelay(true);
        const std::string path = "/e/" + std::to_string(c);
        for (int i = next++; i < total; i = next++) {
          auto r = http.Post(path.c_str(), headers, body, "application/json");
          if (!r || r->status != 200) ++failed;
        }
      });
    for (auto& t : pool) t.join();
    const double secs = ms_between(t0, Clock::now()) / 1000.0;
    const double r = (total - failed) / secs;
    std::cout << "bench webhooks baseline (" << connections << " keep-alive clients → receiver, " << body.size()
              << " B bodies, no Kafka): " << total - failed << " POSTs in " << fixed(secs, 2) << " s = " << fixed(r, 0)
              << " deliveries/s, " << failed << " failed" << std::endl;
    CHECK(failed == 0);
    return r;
  }();
  return rate;
}

// Each (event, endpoint) pair's first healthy delivery: duplicates (at-least-once) don't count.
std::vector<Receiver::Arrival> first_deliveries(const std::vector<Receiver::Arrival>& all) {
  std::unordered_set<std::string> seen;
  std::vector<Receiver::Arrival> out;
  for (const auto& a : all)
    if (!a.hanging && seen.insert(a.id + "#" + std::to_string(a.endpoint)).second) out.push_back(a);
  return out;
}

// SB_BENCH_WEBHOOK_TIMELINE=1: deliveries per second (and the slowest of each second), to see
// stalls and pulses behind a rate or a p99.
void timeline(const std::string& what, Clock::time_point t0, const std::vector<Clock::time_point>& at,
              const std::vector<double>& latency_ms = {}) {
  if (!env_int("SB_BENCH_WEBHOOK_TIMELINE", 0)) return;
  std::map<long, std::pair<int, double>> per_s;
  for (std::size_t i = 0; i < at.size(); ++i) {
    auto& [n, worst] = per_s[static_cast<long>(ms_between(t0, at[i]) / 1000)];
    ++n;
    if (i < latency_ms.size()) worst = std::max(worst, latency_ms[i]);
  }
  std::cout << "  timeline " << what << " (second: deliveries" << (latency_ms.empty() ? "" : "/max ms") << "):";
  for (const auto& [sec, v] : per_s)
    std::cout << " " << sec << ":" << v.first << (latency_ms.empty() ? "" : "/" + fixed(v.second, 0));
  std::cout << std::endl;
}

struct Scenario {
  std::string label;
  int tenants;
  int endpoints_per_tenant;  // every endpoint subscribes to "*": the fan-out per event
};

void run_scenario(const Scenario& s) {
  const double baseline = baseline_rate();
  const int wanted = env_int("SB_BENCH_WEBHOOK_DELIVERIES", 20000);
  const int live_rate = env_int("SB_BENCH_WEBHOOK_RATE", 600);
  const int live_s = env_int("SB_BENCH_WEBHOOK_LIVE_S", 10);
  const int fan_out = s.endpoints_per_tenant;
  const int events = std::max(1, wanted / fan_out);
  const std::size_t backlog = static_cast<std::size_t>(events) * fan_out;

  sbtest::TestStack stack("bench-webhooks", 6);
  tune(stack);
  Receiver rx;
  const auto tenants = insert_tenants(stack, s.tenants);
  {
    sb::pg::Pool pool(stack.config.postgres);
    sb::WebhookStore store(pool);
    int n = 0;
    for (const auto& t : tenants)
      for (int j = 0; j < s.endpoints_per_tenant; ++j) add_endpoint(store, t, rx.url(false, n++));
  }

  const auto topic = stack.topic("sb.events");
  sb::kafka::Producer producer(stack.config.kafka);
  std::atomic<int> publish_failures{0};
  for (int i = 0; i < events; ++i) publish(producer, topic, tenants[i % tenants.size()], publish_failures);
  REQUIRE(producer.flush(60000));
  REQUIRE(publish_failures == 0);

  // ------------------------------------------------------------ backlog: throughput
  const auto spawned = Clock::now();
  auto dispatcher = stack.spawn("webhooks", {"webhooks"});
  const bool drained = sbtest::eventually([&] { return rx.healthy() >= backlog; }, 300000, 20);
  const auto backlog_arrivals = first_deliveries(rx.arrivals());
  if (!drained) {
    std::cout << "bench webhooks " << s.label << ": backlog NOT drained within 300 s: " << backlog_arrivals.size()
              << " of " << backlog << " deliveries" << std::endl;
  }
  REQUIRE(drained);
  Clock::time_point first = backlog_arrivals.front().at, last = first;
  for (const auto& a : backlog_arrivals) {
    first = std::min(first, a.at);
    last = std::max(last, a.at);
  }
  const double drain_s = ms_between(first, last) / 1000.0;
  const double rate = backlog_arrivals.size() / drain_s;
  const double from_spawn_rate = backlog_arrivals.size() / (ms_between(spawned, last) / 1000.0);

  // ------------------------------------------------------------ live: latency at a steady rate
  const double events_per_s = static_cast<double>(live_rate) / fan_out;
  const int live_events = std::max(1, static_cast<int>(events_per_s * live_s));
  std::unordered_map<std::string, Clock::time_point> published_at;
  const auto live_start = Clock::now();
  for (int i = 0; i < live_events; ++i) {
    std::this_thread::sleep_until(live_start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / events_per_s)));
    const auto at = Clock::now();
    published_at[publish(producer, topic, tenants[i % tenants.size()], publish_failures)] = at;
  }
  const std::size_t live_expected = static_cast<std::size_t>(live_events) * fan_out;
  const bool live_done = sbtest::eventually([&] { return rx.healthy() >= backlog + live_expected; }, 120000, 20);
  std::vector<double> latency_ms;
  std::vector<Clock::time_point> live_at;
  Clock::time_point live_last = live_start;
  for (const auto& a : first_deliveries(rx.arrivals())) {
    auto it = published_at.find(a.id);
    if (it == published_at.end()) continue;
    latency_ms.push_back(ms_between(it->second, a.at));
    live_at.push_back(a.at);
    live_last = std::max(live_last, a.at);
  }
  const double live_secs = ms_between(live_start, live_last) / 1000.0;

  std::cout << "bench webhooks " << s.label << " backlog: " << backlog_arrivals.size() << " deliveries ("
            << events << " events × " << fan_out << ") in " << fixed(drain_s, 2) << " s first→last = "
            << fixed(rate, 0) << " deliveries/s, ratio " << fixed(rate / baseline, 3) << "  (start-up "
            << fixed(ms_between(spawned, first) / 1000.0, 2) << " s; " << fixed(from_spawn_rate, 0)
            << " deliveries/s counting from spawn)" << std::endl;
  std::cout << "bench webhooks " << s.label << " live (" << live_rate << " deliveries/s offered for " << live_s
            << " s): " << latency_ms.size() << " of " << live_expected << " deliveries in " << fixed(live_secs, 2)
            << " s = " << fixed(latency_ms.size() / live_secs, 0) << " deliveries/s, p50 "
            << fixed(percentile(latency_ms, 0.5), 1) << " ms, p99 " << fixed(percentile(latency_ms, 0.99), 1)
            << " ms, max " << fixed(percentile(latency_ms, 1.0), 1) << " ms; duplicates over the whole run: "
            << rx.duplicates() << std::endl;
  {
    std::vector<Clock::time_point> at;
    for (const auto& a : backlog_arrivals) at.push_back(a.at);
    timeline(s.label + " backlog, from spawn", spawned, at);
    timeline(s.label + " live", live_start, live_at, latency_ms);
  }
  CHECK(live_done);
  CHECK(publish_failures == 0);
  dispatcher.signal(SIGTERM);
  CHECK(dispatcher.wait(30000) == 0);
}

struct IsolationResult {
  double p50 = 0, p99 = 0;
};

// One tenant, `endpoints` endpoints, every other one hanging (if `hang`); events at a steady
// rate. Returns healthy deliveries' latency.
IsolationResult run_isolation(bool hang) {
  const int endpoints = 20;
  const int timeout_ms = env_int("SB_BENCH_WEBHOOK_TIMEOUT_MS", 5000);
  const int rate = env_int("SB_BENCH_WEBHOOK_ISOLATION_RATE", 500);
  const int seconds = env_int("SB_BENCH_WEBHOOK_ISOLATION_S", 15);
  sbtest::TestStack stack("bench-webhooks-isolation", 6);
  stack.config.webhooks.timeout_ms = timeout_ms;
  tune(stack);
  Receiver rx(timeout_ms + 1000);  // hangs past the dispatcher's timeout
  const auto tenant = insert_tenants(stack, 1).front();
  int healthy_endpoints = 0;
  {
    sb::pg::Pool pool(stack.config.postgres);
    sb::WebhookStore store(pool);
    for (int i = 0; i < endpoints; ++i) {
      const bool h = hang && i % 2 == 1;
      healthy_endpoints += !h;
      add_endpoint(store, tenant, rx.url(h, i));
    }
  }
  const auto topic = stack.topic("sb.events");
  sb::kafka::Producer producer(stack.config.kafka);
  std::atomic<int> publish_failures{0};
  auto dispatcher = stack.spawn("webhooks", {"webhooks"});
  // Warm up (group joined, endpoints cached) with one event, outside the measurement.
  publish(producer, topic, tenant, publish_failures);
  REQUIRE(sbtest::eventually([&] { return rx.healthy() >= static_cast<std::size_t>(healthy_endpoints); }, 60000, 20));

  const double events_per_s = static_cast<double>(rate) / endpoints;
  const int events = std::max(1, static_cast<int>(events_per_s * seconds));
  std::unordered_map<std::string, Clock::time_point> published_at;
  const auto start = Clock::now();
  for (int i = 0; i < events; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / events_per_s)));
    const auto at = Clock::now();
    published_at[publish(producer, topic, tenant, publish_failures)] = at;
  }
  const std::size_t expected = static_cast<std::size_t>(healthy_endpoints) * (events + 1);
  const bool done = sbtest::eventually([&] { return rx.healthy() >= expected; }, 120000, 20);
  std::vector<double> latency_ms;
  std::vector<Clock::time_point> at;
  for (const auto& a : first_deliveries(rx.arrivals())) {
    auto it = published_at.find(a.id);
    if (it == published_at.end()) continue;
    latency_ms.push_back(ms_between(it->second, a.at));
    at.push_back(a.at);
  }
  timeline(std::string("isolation ") + (hang ? "half hanging" : "all healthy"), start, at, latency_ms);
  IsolationResult r{percentile(latency_ms, 0.5), percentile(latency_ms, 0.99)};
  std::cout << "bench webhooks isolation, " << (hang ? "10 of 20 endpoints hanging" : "all 20 endpoints healthy")
            << " (" << rate << " deliveries/s offered for " << seconds << " s, timeout " << timeout_ms
            << " ms): healthy " << latency_ms.size() << " of " << expected - healthy_endpoints << " deliveries, p50 "
            << fixed(r.p50, 1) << " ms, p99 " << fixed(r.p99, 1) << " ms, max " << fixed(percentile(latency_ms, 1.0), 1)
            << " ms; requests to hanging endpoints: " << rx.hanging() << ", duplicates: " << rx.duplicates() << std::endl;
  CHECK(done);
  CHECK(publish_failures == 0);
  dispatcher.signal(SIGTERM);
  CHECK(dispatcher.wait(timeout_ms + 30000) == 0);
  return r;
}

}  // namespace

TEST_CASE("bench webhooks: receiver baseline", "[.bench][webhooks]") { CHECK(baseline_rate() > 0); }

TEST_CASE("bench webhooks: 1 endpoint", "[.bench][webhooks]") { run_scenario({"1 endpoint", 1, 1}); }

TEST_CASE("bench webhooks: 100 endpoints over 100 tenants", "[.bench][webhooks]") {
  run_scenario({"100 endpoints", 100, 1});
}

TEST_CASE("bench webhooks: 1000 endpoints over 1000 tenants", "[.bench][webhooks]") {
  run_scenario({"1000 endpoints", 1000, 1});
}

TEST_CASE("bench webhooks: fan-out 100 (1 tenant with 100 endpoints)", "[.bench][webhooks]") {
  run_scenario({"fan-out 100", 1, 100});
}

TEST_CASE("bench webhooks: isolation (half the endpoints hanging until timeout)", "[.bench][webhooks]") {
  const auto healthy = run_isolation(false);
  const auto hanging = run_isolation(true);
  std::cout << "bench webhooks isolation: healthy-endpoint p99 with half hanging " << fixed(hanging.p99, 1)
            << " ms vs all-healthy p99 " << fixed(healthy.p99, 1) << " ms, ratio " << fixed(hanging.p99 / healthy.p99, 2)
            << std::endl;
}
