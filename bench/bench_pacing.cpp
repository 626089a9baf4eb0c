// The pacing benchmark (issue 9), measured from outside like bench_receipts (nothing of
// switchboard is linked): intake, two worker replicas per lane (six processes, each with its own
// ops port), the simulator as the provider (SB_BENCH_PROVIDER_LATENCY_MS, 5 ms), Redis holding
// every session's pacing state.
//
//   phases     open loop at SB_BENCH_PACING_RATE (200) sends/s over 50 tenants × 4 sessions and
//              the three lanes (so each session's sends are split across three lanes and six
//              replicas that share its Redis budget), the same offered load in each phase:
//                unpaced       the policy limits nothing (no Redis call per send): the baseline
//                under limit   min_gap 200 ms + jitter 0..100 ms; each session is offered a send
//                              a second
//                over limit    min_gap 1200 ms + jitter 0..400 ms (≤ 0.71/s per session, offered
//                              1/s): sends wait in the session engine's timers and ask again
//              Per phase, over a window after a warm-up: sends/s (the workers' sent counters),
//              pacer asks, waits and Redis round trips (pipelines) per send (the workers'
//              counters), Redis commands per send (INFO commandstats: EVALSHA calls, and the
//              commands the scripts ran inside), CPU per send over every process (Redis
//              included), and the difference to the unpaced baseline. Policies at their default
//              cache (pacing.policy_cache_ms 5 s): each phase starts after it has passed.
//   waiting    SB_BENCH_PACING_WAITING (2,000) more sessions of ten tenants with a 10-minute gap:
//              a first send each (sent at once), then a second each, which waits. The workers'
//              threads and RSS before and while they wait, Redis commands while they wait, and
//              the latency of 100 unpaced sends meanwhile (nothing else is held up).
#include "cluster_bench.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using namespace sbbench::cluster;

namespace {

struct PhaseResult {
  std::string name;
  double seconds = 0, sent = 0, reserves = 0, waits = 0, round_trips = 0;
  long long redis_commands = 0;
  std::map<std::string, long long> redis;
  sbbench::e2e::Cpu cpu;
  long long failures = 0;
};

}  // namespace

TEST_CASE("bench: pacing — Redis round trips and CPU per paced send across 2 replicas × 3 lanes, waiting sessions cost memory not threads",
          "[.bench]") {
  const int tenant_count = 50, sessions = 4;
  const int rate = env_int("SB_BENCH_PACING_RATE", 200);
  const int warmup_s = env_int("SB_BENCH_WARMUP_S", 5);
  const int window_s = env_int("SB_BENCH_SATURATION_S", 15);
  const int latency_ms = env_int("SB_BENCH_PROVIDER_LATENCY_MS", 5);
  const int waiting = env_int("SB_BENCH_PACING_WAITING", 2000);
  const int waiting_tenants = 10;

  Bench bench("pacing");
  const int intake_port = bench.port(), sim_port = bench.port();
  const Sections common = {
      {"intake", "  listen: \"127.0.0.1:" + std::to_string(intake_port) + "\"\n"},
      {"provider", "  url: \"http://127.0.0.1:" + std::to_string(sim_port) + "\"\n"},
      {"simulator", "  listen: \"127.0.0.1:" + std::to_string(sim_port) + "\"\n  latency_ms: " + std::to_string(latency_ms) +
                        "\n  latency_jitter_ms: 0\n"}};
  const std::string config = bench.write_config("switchboard.yaml", common);
  bench.cli(config, {"migrate"});
  bench.cli(config, {"topics", "ensure"});
  std::vector<sbbench::e2e::Tenant> tenants(tenant_count);
  for (int t = 0; t < tenant_count; ++t) {
    tenants[t].name = "bench-" + std::to_string(t);
    tenants[t].key = bench.tenant(config, tenants[t].name);
  }
  std::vector<std::string> waiting_keys;
  for (int t = 0; t < waiting_tenants; ++t) waiting_keys.push_back(bench.tenant(config, "waiting-" + std::to_string(t)));
  auto pg = bench.connect();
  {
    // Simulator sessions as `switchboard session create` makes them (WORKING from the start),
    // in one statement instead of 2,200 CLI runs.
    pqxx::work tx(pg);
    tx.exec("INSERT INTO sessions (tenant_id, name, provider, status) SELECT t.id, 's' || g, 'simulator', 'WORKING' "
            "FROM tenants t, generate_series(0, " + std::to_string(sessions - 1) + ") g WHERE t.name LIKE 'bench-%'");
    tx.exec("INSERT INTO sessions (tenant_id, name, provider, status) SELECT t.id, 'w' || g, 'simulator', 'WORKING' "
            "FROM tenants t, generate_series(0, " + std::to_string(waiting / waiting_tenants - 1) + ") g WHERE t.name LIKE 'waiting-%'");
    tx.commit();
  }

  bench.spawn("simulator", config, {"simulator"});
  bench.spawn("intake", config, {"intake"});
  std::vector<int> ops_ports;
  std::vector<Proc*> workers;
  for (const char* lane : sbbench::e2e::kLanes)
    for (int r = 0; r < 2; ++r) {
      const int ops = bench.port();
      ops_ports.push_back(ops);
      Sections s = common;
      s["worker"] = "  ops_listen: \"127.0.0.1:" + std::to_string(ops) + "\"\n";
      const std::string label = std::string("worker-") + lane + "-" + std::to_string(r);
      workers.push_back(&bench.spawn(label, bench.write_config(label + ".yaml", s), {"worker", "--lane", lane}));
    }
  httplib::Client api("127.0.0.1", intake_port);
  api.set_read_timeout(30, 0);
  REQUIRE(sbbench::eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; }, 60000));
  for (int p : ops_ports) REQUIRE(sbbench::eventually([&] { return metric_sum(p, "switchboard_worker_sent_total") >= 0; }, 60000));
  auto workers_sum = [&](const std::string& name) {
    double s = 0;
    for (int p : ops_ports) s += std::max(0.0, metric_sum(p, name));
    return s;
  };
  auto set_pacing = [&](const std::vector<std::string>& keys, const json& pacing) {
    for (const auto& k : keys) {
      auto [st, body] = call(api, "PATCH", "/v1/pacing", k, json{{"pacing", pacing}}.dump());
      INFO(body);
      REQUIRE(st == 200);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(6000));  // past pacing.policy_cache_ms (5 s)
  };
  std::vector<std::string> bench_keys;
  for (const auto& t : tenants) bench_keys.push_back(t.key);
  auto redis = bench.redis_counters();
  const std::string load_start = load_average();

  // ---------------------------------------------------------------- the three phases
  auto phase = [&](const std::string& name, const json& pacing, bool drain) {
    set_pacing(bench_keys, pacing);
    sbbench::e2e::Load load(intake_port, tenants, sessions, 16);
    const double sent_before_load = workers_sum("switchboard_worker_sent_total");
    load.start(rate);
    std::this_thread::sleep_for(std::chrono::seconds(warmup_s));
    PhaseResult r;
    r.name = name;
    const double sent0 = workers_sum("switchboard_worker_sent_total"), res0 = workers_sum("switchboard_pacing_reserves_total"),
                 waits0 = workers_sum("switchboard_pacing_waits_total"), rt0 = workers_sum("switchboard_pacing_redis_round_trips_total");
    redis->begin();
    CpuWindow cpu(bench.system());
    const auto from = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(window_s));
    r.seconds = ms_between(from, Clock::now()) / 1000.0;
    r.cpu = cpu.end(bench.system());
    r.redis = redis->end();
    r.sent = workers_sum("switchboard_worker_sent_total") - sent0;
    r.reserves = workers_sum("switchboard_pacing_reserves_total") - res0;
    r.waits = workers_sum("switchboard_pacing_waits_total") - waits0;
    r.round_trips = workers_sum("switchboard_pacing_redis_round_trips_total") - rt0;
    r.redis_commands = sbbench::sum(r.redis);
    auto p = load.stop();
    r.failures = p.failures;
    if (drain) {  // every accepted send out before the next phase
      const double expected = sent_before_load + load.accepted();
      REQUIRE(sbbench::eventually([&] { return workers_sum("switchboard_worker_sent_total") >= expected; }, 300000, 200));
    }
    return r;
  };
  std::vector<PhaseResult> phases;
  phases.push_back(phase("unpaced (baseline)", {{"min_gap_ms", 0}, {"jitter_ms", 0}}, true));
  phases.push_back(phase("paced, under the limit (200 ms + 0..100)", {{"min_gap_ms", 200}, {"jitter_ms", 100}}, true));
  phases.push_back(phase("paced, over the limit (1200 ms + 0..400)", {{"min_gap_ms", 1200}, {"jitter_ms", 400}}, true));
  const std::string load_phases = load_average();

  // ---------------------------------------------------------------- waiting sessions
  set_pacing(bench_keys, {{"min_gap_ms", 0}, {"jitter_ms", 0}});
  set_pacing(waiting_keys, {{"min_gap_ms", 600000}});
  auto send_waiting = [&](const std::string& text) {
    return in_parallel(intake_port, waiting, 8, [&](httplib::Client& c, int i) -> std::string {
      auto [st, body] = call(c, "POST", "/v1/sessions/w" + std::to_string(i / waiting_tenants) + "/messages", waiting_keys[i % waiting_tenants],
                             json{{"to", "+15550001234"}, {"text", text + " " + std::to_string(i)}, {"priority", sbbench::e2e::kLanes[i % 3]}}.dump());
      return st == 202 ? "" : std::to_string(st) + " " + body;
    });
  };
  std::map<std::string, ProcMem> mem0, mem1;
  auto workers_mem = [&] {
    std::map<std::string, ProcMem> m;
    for (const auto* w : workers) m[w->label()] = proc_mem(w->pid());
    return m;
  };
  const double sent_w0 = workers_sum("switchboard_worker_sent_total");
  auto failures = send_waiting("first");
  INFO((failures.empty() ? "" : failures.front()));
  REQUIRE(failures.empty());
  REQUIRE(sbbench::eventually([&] { return workers_sum("switchboard_worker_sent_total") >= sent_w0 + waiting; }, 120000, 200));
  mem0 = workers_mem();
  const double waits_w0 = workers_sum("switchboard_pacing_waits_total");
  failures = send_waiting("second");
  REQUIRE(failures.empty());
  // Each second send asked once and was told to wait ~10 minutes.
  REQUIRE(sbbench::eventually([&] { return workers_sum("switchboard_pacing_waits_total") >= waits_w0 + waiting; }, 120000, 200));
  const double sent_waiting = workers_sum("switchboard_worker_sent_total");
  mem1 = workers_mem();
  // While they wait: Redis commands over 5 s, and 100 unpaced sends' latency (POST → sent).
  redis->begin();
  const auto quiet_from = Clock::now();
  std::vector<double> free_ms;
  {
    httplib::Client c("127.0.0.1", intake_port);
    for (int i = 0; i < 100; ++i) {
      const auto t0 = Clock::now();
      auto [st, body] = call(c, "POST", "/v1/sessions/s" + std::to_string(i % sessions) + "/messages", tenants[i % tenant_count].key,
                             json{{"to", "+15550001234"}, {"text", "free " + std::to_string(i)}, {"priority", sbbench::e2e::kLanes[i % 3]}}.dump());
      REQUIRE(st == 202);
      const auto id = json::parse(body)["id"].get<std::string>();
      REQUIRE(sbbench::eventually([&] {
        auto [s, b] = call(c, "GET", "/v1/messages/" + id, tenants[i % tenant_count].key);
        return s == 200 && json::parse(b).value("status", "") == "sent";
      }, 30000, 2));
      free_ms.push_back(ms_between(t0, Clock::now()));
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(std::max<long long>(0, 5000 - static_cast<long long>(ms_between(quiet_from, Clock::now())))));
  const auto quiet_redis = redis->end();
  const double quiet_s = ms_between(quiet_from, Clock::now()) / 1000.0;
  const double waiting_sent_after = workers_sum("switchboard_worker_sent_total") - sent_waiting - 100;

  // ---------------------------------------------------------------- summary
  std::printf("\n=== bench pacing summary: %d tenants × %d simulator sessions, 3 lanes × 2 worker replicas, open loop %d sends/s, "
              "engine %d ms, %d s windows after %d s warm-up ===\n",
              tenant_count, sessions, rate, latency_ms, window_s, warmup_s);
  std::printf("load average at the start / after the phases: %s / %s\n", load_start.c_str(), load_phases.c_str());
  std::printf("%-44s %8s %9s %10s %9s %8s %9s %11s %12s\n", "phase", "sends/s", "asks/send", "waits/send", "RTT/send", "EVALSHA", "in script",
              "CPU µs/send", "Δ vs unpaced");
  const auto& base = phases.front();
  const double base_cpu = sbbench::ticks_to_us(base.cpu.total()) / std::max(1.0, base.sent);
  for (const auto& p : phases) {
    const double n = std::max(1.0, p.sent);
    const double cpu_us = sbbench::ticks_to_us(p.cpu.total()) / n;
    const double evalsha = p.redis.count("evalsha") ? p.redis.at("evalsha") : 0;
    std::printf("%-44s %8s %9s %10s %9s %8s %9s %11s %12s\n", p.name.c_str(), fmt(p.sent / p.seconds).c_str(), fmt(p.reserves / n, 2).c_str(),
                fmt(p.waits / n, 2).c_str(), fmt(p.round_trips / n, 3).c_str(), fmt(evalsha / n, 2).c_str(),
                fmt((p.redis_commands - evalsha) / n, 2).c_str(), fmt(cpu_us).c_str(),
                ((cpu_us - base_cpu >= 0 ? "+" : "") + fmt(cpu_us - base_cpu)).c_str());
    std::printf("    CPU µs/send: %s\n", per_component(p.cpu, n, 1).c_str());
    std::printf("    Redis commands/send: %s; failed requests %lld\n", sbbench::e2e::breakdown(p.redis, n).c_str(), p.failures);
  }
  long threads0 = 0, threads1 = 0, rss0 = 0, rss1 = 0;
  for (const auto& [label, m] : mem0) {
    threads0 += m.threads;
    rss0 += m.rss_kib;
    threads1 += mem1[label].threads;
    rss1 += mem1[label].rss_kib;
  }
  std::printf("%-64s %16s\n", ("sends waiting on a 10-minute gap (" + std::to_string(waiting) + " sessions)").c_str(),
              fmt(waiting - std::max(0.0, waiting_sent_after)).c_str());
  std::printf("%-64s %16s\n", "threads of the six workers: before / while they wait", (std::to_string(threads0) + " / " + std::to_string(threads1)).c_str());
  std::printf("%-64s %16s\n", "RSS of the six workers (KiB): before / while they wait", (std::to_string(rss0) + " / " + std::to_string(rss1)).c_str());
  std::printf("%-64s %16s\n", "RSS per waiting send (bytes)", fmt((rss1 - rss0) * 1024.0 / waiting).c_str());
  std::string per_worker;
  for (const auto& [label, m] : mem1)
    per_worker += (per_worker.empty() ? "" : ", ") + label + " " + std::to_string(mem0[label].threads) + "→" + std::to_string(m.threads) + " threads " +
                  fmt((m.rss_kib - mem0[label].rss_kib) / 1024.0, 1) + " MiB";
  std::printf("    %s\n", per_worker.c_str());
  std::printf("%-64s %16s\n", "Redis commands/s while they wait (100 unpaced sends meanwhile)", fmt(sbbench::sum(quiet_redis) / quiet_s, 1).c_str());
  std::printf("    %s\n", sbbench::e2e::breakdown(quiet_redis, quiet_s).c_str());
  std::printf("%-64s %16s\n", "unpaced send POST → sent meanwhile p50 / p99 (ms)",
              (fmt(sbbench::percentile(free_ms, 0.5), 1) + " / " + fmt(sbbench::percentile(free_ms, 0.99), 1)).c_str());
  std::fflush(stdout);

  CHECK(threads1 == threads0);
  CHECK(waiting_sent_after <= 0);
  for (const auto& p : phases) CHECK(p.failures == 0);
  CHECK(phases[2].waits > 0);
}
