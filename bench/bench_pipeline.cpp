// End-to-end and intake benchmarks with a same-run baseline (see bench/README.md).
//
//   raw librdkafka   produce N records of the command's size → consume them (one topic)
//   end to end       HTTP POST (64 keep-alive connections) → intake → lane → worker →
//                    simulator → PostgreSQL → message.sent on sb.events
//   intake only      the same HTTP load with no workers: accept + record + publish + ack
//
// Sizes come from SB_BENCH_MESSAGES (default 20000) and SB_BENCH_TENANTS (default 50).
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "bench_util.hpp"
#include "stack.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/ids.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using sbbench::percentile;

namespace {

struct LoadResult {
  double seconds = 0;
  std::map<std::string, Clock::time_point> accepted_at;  // id → when the POST began
  std::vector<double> request_ms;
  int failures = 0;
};

// `connections` keep-alive clients share `total` POSTs round-robin over the tenants.
LoadResult http_load(int port, const std::vector<sbtest::TenantInfo>& tenants, int total, int connections) {
  LoadResult out;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  const auto t0 = Clock::now();
  for (int c = 0; c < connections; ++c)
    pool.emplace_back([&] {
      httplib::Client http("127.0.0.1", port);
      http.set_keep_alive(true);
      http.set_tcp_nodelay(true);
      http.set_read_timeout(60, 0);
      std::vector<double> lat;
      std::vector<std::pair<std::string, Clock::time_point>> ids;
      int failed = 0;
      for (int i = next++; i < total; i = next++) {
        const auto& t = tenants[i % tenants.size()];
        json body = {{"to", "+15550001234"}, {"text", "benchmark message " + std::to_string(i)},
                     {"priority", sb::kLanes[i % 3]}};
        const auto start = Clock::now();
        auto r = http.Post("/v1/sessions/main/messages", sbtest::bearer(t.api_key), body.dump(), "application/json");
        lat.push_back(ms_between(start, Clock::now()));
        if (!r || r->status != 202) {
          ++failed;
          continue;
        }
        ids.emplace_back(json::parse(r->body)["id"].get<std::string>(), start);
      }
      std::lock_guard lock(mu);
      out.request_ms.insert(out.request_ms.end(), lat.begin(), lat.end());
      for (auto& [id, at] : ids) out.accepted_at[id] = at;
      out.failures += failed;
    });
  for (auto& t : pool) t.join();
  out.seconds = ms_between(t0, Clock::now()) / 1000.0;
  return out;
}

}  // namespace

TEST_CASE("bench: raw librdkafka baseline vs end to end vs intake only", "[.bench]") {
  const int total = env_int("SB_BENCH_MESSAGES", 20000);
  const int tenant_count = env_int("SB_BENCH_TENANTS", 50);
  const int connections = env_int("SB_BENCH_CONNECTIONS", 64);

  // ---------------------------------------------------------------- raw baseline
  sbtest::TestStack stack("bench", 12);
  const auto sample = sb::to_json(sb::SendCommand{sb::new_uuid_v7(), sb::new_uuid_v7(), "main", "default",
                                                  sb::now_rfc3339(), "+15550001234", "benchmark message 12345"}).dump();
  double raw_rate = 0;
  {
    // 10x the records of the other runs, so client start-up and the first fetch wait don't
    // dominate a run that takes well under a second.
    const int raw_total = total * 10;
    const auto topic = stack.topic("bench.raw");
    sb::kafka::ensure_topics(stack.config.kafka, {{topic, stack.config.kafka.partitions, 1, {}}});
    sbtest::TopicReader reader(stack.config, topic);
    reader.read_until([](const auto&) { return false; }, 1000);  // assigned and fetching before we start
    sb::kafka::Producer producer(stack.config.kafka);
    const auto t0 = Clock::now();
    std::thread produce([&] {
      for (int i = 0; i < raw_total; ++i)
        producer.produce(topic, "tenant-" + std::to_string(i % tenant_count), sample, {}, [](const auto&) {});
      producer.flush(60000);
    });
    REQUIRE(reader.read_until([&](const auto& recs) { return static_cast<int>(recs.size()) >= raw_total; }, 300000));
    const double secs = ms_between(t0, Clock::now()) / 1000.0;
    produce.join();
    raw_rate = raw_total / secs;
    std::printf("raw librdkafka produce→consume: %d records of %zu B in %.2f s = %.0f records/s\n", raw_total,
                sample.size(), secs, raw_rate);
  }

  // ---------------------------------------------------------------- end to end
  std::vector<sbtest::TenantInfo> tenants;
  for (int i = 0; i < tenant_count; ++i) tenants.push_back(stack.create_tenant("bench-" + std::to_string(i)));
  const int sim_port = sbtest::free_port(), intake_port = sbtest::free_port();
  stack.config.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
  stack.config.simulator.latency_ms = 0;
  stack.config.simulator.latency_jitter_ms = 0;
  stack.config.provider.url = "http://127.0.0.1:" + std::to_string(sim_port);
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(intake_port);
  stack.config.log.level = "warn";
  stack.write_config();
  auto simulator = stack.spawn("simulator", {"simulator"});
  auto intake = stack.spawn("intake", {"intake"});
  httplib::Client api("127.0.0.1", intake_port);
  REQUIRE(sbtest::eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; }, 30000));
  std::vector<sbtest::Child> workers;
  for (const char* lane : sb::kLanes) workers.push_back(stack.spawn(std::string("worker-") + lane, {"worker", "--lane", lane}));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // let the groups settle

  std::map<std::string, Clock::time_point> seen;
  std::mutex seen_mu;
  std::atomic<bool> reading{true};
  std::thread reader_thread([&] {
    sbtest::TopicReader events(stack.config, stack.topic("sb.events"));
    size_t consumed = 0;
    events.read_until([&](const auto& recs) {
      std::lock_guard lock(seen_mu);
      for (; consumed < recs.size(); ++consumed) {
        json e = json::parse(sb::kafka::value_of(recs[consumed].get()));
        const std::string id = e["data"]["message_id"];
        seen.emplace(id, Clock::now());
      }
      return !reading.load() || static_cast<int>(seen.size()) >= total;
    }, 600000);
  });
  const auto e2e_start = Clock::now();
  auto load = http_load(intake_port, tenants, total, connections);
  REQUIRE(sbtest::eventually([&] { std::lock_guard l(seen_mu); return static_cast<int>(seen.size()) >= total - load.failures; }, 300000, 100));
  reading = false;
  reader_thread.join();
  Clock::time_point last = e2e_start;
  std::vector<double> e2e_ms;
  for (const auto& [id, at] : load.accepted_at) {
    auto it = seen.find(id);
    if (it == seen.end()) continue;
    last = std::max(last, it->second);
    e2e_ms.push_back(ms_between(at, it->second));
  }
  const double e2e_secs = ms_between(e2e_start, last) / 1000.0;
  const double e2e_rate = e2e_ms.size() / e2e_secs;
  std::printf("end to end (HTTP accept → message.sent): %zu messages in %.2f s = %.0f msg/s, p50 %.1f ms, p99 %.1f ms, "
              "%d failed requests\n",
              e2e_ms.size(), e2e_secs, e2e_rate, percentile(e2e_ms, 0.5), percentile(e2e_ms, 0.99), load.failures);
  std::printf("  (of which accepting the %d requests took %.2f s = %.0f req/s while workers ran)\n", total, load.seconds,
              total / load.seconds);
  std::printf("ratio end to end / raw baseline: %.3f\n", e2e_rate / raw_rate);
  for (auto& w : workers) w.signal(SIGTERM);
  for (auto& w : workers) w.wait(20000);

  // ---------------------------------------------------------------- intake only
  auto intake_load = http_load(intake_port, tenants, total, connections);
  std::printf("intake only (%d keep-alive connections): %d requests in %.2f s = %.0f req/s, p50 %.2f ms, p99 %.2f ms, "
              "%d failed\n",
              connections, total, intake_load.seconds, total / intake_load.seconds, percentile(intake_load.request_ms, 0.5),
              percentile(intake_load.request_ms, 0.99), intake_load.failures);
  CHECK(load.failures == 0);
  CHECK(intake_load.failures == 0);
}
