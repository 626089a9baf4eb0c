// The engine-nodes benchmark (issue 9), measured from outside like bench_receipts (nothing of
// switchboard is linked): `switchboard simulator` processes are the engine nodes of one storage
// group (a shared simulator.auth_store, as WAHA nodes share a session database), registered with
// `switchboard nodes add`; intake, three lane workers, the callbacks worker and one
// `switchboard placer` run as in production.
//
//   failover   SB_BENCH_FAILOVER_SESSIONS (1,000) sessions created through the API while node n1
//              is the only node, each QR read from the API and scanned at n1; then n2..n4 are
//              added (empty) and n1 is SIGKILLed. Measured: kill → n1 declared dead → every one
//              of its sessions WORKING on another node (from the sessions table, polled every
//              20 ms), the placer's CPU and every process's over that window, and afterwards that
//              each session runs on exactly one node — the one it is placed on.
//   placement  closed loop, SB_BENCH_PLACE_CONNECTIONS (16) connections: POST /v1/sessions
//              (provider engine, group g) — the placement decision (group's nodes locked, each
//              one's slot count read: engine_nodes.placed, migration 012) in the creating transaction, then the start on the chosen
//              node through a lane worker. Decisions/s at saturation after a warm-up, CPU and
//              PostgreSQL statements per decision, sessions started/s (left STARTING). Baseline
//              in the same run, same connections: POST /v1/sessions with provider simulator (the
//              same route, validation and insert; no placement, no start).
#include <set>

#include "cluster_bench.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using namespace sbbench::cluster;

namespace {

constexpr const char* kBenchAdminKey = "bench-admin-key-7c1d";

struct SimNode {
  std::string name, config;
  int port = 0;
  Proc* proc = nullptr;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// What the poll of the sessions table saw, and when.
struct FailoverTimes {
  double dead_ms = -1, first_ms = -1, half_ms = -1, p99_ms = -1, all_ms = -1;
};

std::vector<std::string> running_on(const SimNode& n) {
  httplib::Client c("127.0.0.1", n.port);
  auto r = c.Get("/api/sessions");
  std::vector<std::string> out;
  if (!r || r->status != 200) return out;
  for (const auto& s : json::parse(r->body)) out.push_back(s["name"]);
  return out;
}

long long count_where(pqxx::connection& c, const std::string& where) {
  pqxx::nontransaction tx(c);
  return tx.exec1("SELECT count(*) FROM sessions WHERE " + where)[0].as<long long>();
}

}  // namespace

TEST_CASE("bench: engine nodes — failover of a SIGKILLed node's sessions, placement decisions per second", "[.bench]") {
  const int sessions = env_int("SB_BENCH_FAILOVER_SESSIONS", 1000);
  const int targets = env_int("SB_BENCH_FAILOVER_TARGETS", 3);
  const int probe_ms = env_int("SB_BENCH_PROBE_INTERVAL_MS", 500);
  const int threshold = env_int("SB_BENCH_FAILURE_THRESHOLD", 3);
  const int max_starts = env_int("SB_BENCH_MAX_STARTS_PER_NODE", 16);
  const int stagger_ms = env_int("SB_BENCH_START_STAGGER_MS", 20);
  const int start_delay_ms = env_int("SB_BENCH_ENGINE_START_DELAY_MS", 20);
  const int place_connections = env_int("SB_BENCH_PLACE_CONNECTIONS", 16);
  const int warmup_s = env_int("SB_BENCH_WARMUP_S", 5);
  const int window_s = env_int("SB_BENCH_SATURATION_S", 15);
  const int tenant_count = 10;

  Bench bench("nodes");
  const int intake_port = bench.port(), placer_ops = bench.port();
  const std::string auth_dir = bench.log_dir() + "/auth-g";
  const Sections common = {
      {"intake", "  listen: \"127.0.0.1:" + std::to_string(intake_port) + "\"\n  admin_key: \"" + kBenchAdminKey + "\"\n"},
      {"placer", "  probe_interval_ms: " + std::to_string(probe_ms) + "\n  failure_threshold: " + std::to_string(threshold) +
                     "\n  max_starts_per_node: " + std::to_string(max_starts) + "\n  start_stagger_ms: " + std::to_string(stagger_ms) +
                     "\n  start_jitter: 0.3\n  ops_listen: \"127.0.0.1:" + std::to_string(placer_ops) + "\"\n"},
      {"sessions", "  hold_poll_ms: 100\n"}};
  const std::string config = bench.write_config("switchboard.yaml", common);
  std::vector<SimNode> nodes(1 + targets);
  for (int i = 0; i < 1 + targets; ++i) {
    auto& n = nodes[i];
    n.name = "n" + std::to_string(i + 1);
    n.port = bench.port();
    Sections s = common;
    s["simulator"] = "  listen: \"127.0.0.1:" + std::to_string(n.port) + "\"\n  name: " + n.name + "\n  auth_store: \"" + auth_dir +
                     "\"\n  latency_ms: 1\n  latency_jitter_ms: 0\n  engine:\n    start_delay_ms: " + std::to_string(start_delay_ms) + "\n";
    n.config = bench.write_config("sim-" + n.name + ".yaml", s);
  }
  bench.cli(config, {"migrate"});
  bench.cli(config, {"topics", "ensure"});
  std::vector<std::string> keys;
  for (int t = 0; t < tenant_count; ++t) keys.push_back(bench.tenant(config, "bench-" + std::to_string(t)));

  for (auto& n : nodes) n.proc = &bench.spawn("sim-" + n.name, n.config, {"simulator"});
  bench.spawn("intake", config, {"intake"});
  for (const char* lane : sbbench::e2e::kLanes) bench.spawn(std::string("worker-") + lane, config, {"worker", "--lane", lane});
  bench.spawn("callbacks", config, {"callbacks"});
  Proc& placer = bench.spawn("placer", config, {"placer"});
  for (const auto& n : nodes) {
    httplib::Client sim("127.0.0.1", n.port);
    REQUIRE(sbbench::eventually([&] { auto r = sim.Get("/health"); return r && r->status == 200; }, 30000));
  }
  httplib::Client api("127.0.0.1", intake_port);
  api.set_read_timeout(30, 0);
  REQUIRE(sbbench::eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; }, 60000));
  auto add_node = [&](const SimNode& n, int capacity) {
    bench.cli(config, {"nodes", "add", n.name, "--url", n.url(), "--capacity", std::to_string(capacity), "--group", "g"});
  };
  add_node(nodes[0], sessions);

  // ---------------------------------------------------------------- pairing on n1
  auto name_of = [&](int i) { return "s" + std::to_string(i / tenant_count); };
  const auto t_pair = Clock::now();
  auto failures = in_parallel(intake_port, sessions, 8, [&](httplib::Client& c, int i) -> std::string {
    const auto& key = keys[i % tenant_count];
    const auto name = name_of(i);
    auto [st, body] = call(c, "POST", "/v1/sessions", key, json{{"id", name}, {"provider", "engine"}, {"config", {{"group", "g"}}}}.dump());
    if (st != 201) return "create " + name + ": " + std::to_string(st) + " " + body;
    httplib::Client phone("127.0.0.1", nodes[0].port);
    std::string qr, last;
    for (int attempt = 0; attempt < 5; ++attempt) {
      // As a person would: a QR that rotated between showing and scanning is refused, so scan the next one shown.
      if (!sbbench::eventually([&] {
            auto [s, b] = call(c, "GET", "/v1/sessions/" + name + "/qr", key);
            if (s != 200) return false;
            qr = json::parse(b)["value"];
            return qr != last;
          }, 60000, 50))
        return "session " + name + ": no QR within 60 s";
      auto r = phone.Post("/sim/scan", json{{"qr", qr}}.dump(), "application/json");
      if (r && r->status == 200) return "";
      last = qr;
    }
    return "session " + name + ": five QRs refused";
  });
  INFO((failures.empty() ? "" : failures.front()));
  REQUIRE(failures.empty());
  auto pg = bench.connect();
  REQUIRE(sbbench::eventually([&] { return count_where(pg, "status = 'WORKING' AND node = 'n1'") == sessions; }, 180000, 200));
  const double pair_s = ms_between(t_pair, Clock::now()) / 1000.0;
  std::printf("bench nodes: %d sessions created through the API, QR scanned, WORKING on n1 in %.1f s\n", sessions, pair_s);
  // The other nodes join empty; the placer sees them healthy before n1 dies.
  // (Room for the placement phase's sessions too.)
  for (int i = 1; i <= targets; ++i) add_node(nodes[i], 1000000);
  {
    pqxx::nontransaction tx(pg);
    REQUIRE(sbbench::eventually([&] {
      return tx.exec1("SELECT count(*) FROM engine_nodes WHERE health = 'healthy'")[0].as<int>() == 1 + targets;
    }, 30000, 100));
  }
  // Idle baseline, same processes: what they burn doing nothing but probes, heartbeats and
  // polls (subtracted from the failover window's CPU, pro rata).
  const int idle_ms = std::max(3000, 2 * probe_ms);
  CpuWindow idle(bench.system());
  std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
  const auto idle_cpu = idle.end(bench.system());

  // ---------------------------------------------------------------- failover
  const std::string load_before = load_average();
  const auto t_kill = Clock::now();
  ::kill(nodes[0].proc->pid(), SIGKILL);
  REQUIRE(nodes[0].proc->wait(5000) >= 0);
  CpuWindow cpu(bench.system());  // n1 gone: its CPU is out of both readings
  const long placer_ticks0 = sbbench::own_ticks(placer.pid());
  FailoverTimes ft;
  {
    pqxx::nontransaction tx(pg);
    const auto deadline = t_kill + std::chrono::minutes(30);
    while (Clock::now() < deadline) {
      auto r = tx.exec1(
          "SELECT (SELECT health FROM engine_nodes WHERE name = 'n1'), count(*) FILTER (WHERE status = 'WORKING' AND node <> 'n1') "
          "FROM sessions");
      const double now = ms_between(t_kill, Clock::now());
      const auto working = r[1].as<long long>();
      if (ft.dead_ms < 0 && r[0].as<std::string>() == "dead") ft.dead_ms = now;
      if (ft.first_ms < 0 && working >= 1) ft.first_ms = now;
      if (ft.half_ms < 0 && working >= sessions / 2) ft.half_ms = now;
      if (ft.p99_ms < 0 && working >= sessions * 99 / 100) ft.p99_ms = now;
      if (working == sessions) {
        ft.all_ms = now;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  const auto failover_cpu = cpu.end(bench.system());
  const long placer_ticks = sbbench::own_ticks(placer.pid()) - placer_ticks0;
  REQUIRE(ft.all_ms > 0);
  // One owner each: every session runs on exactly one node, the one it is placed on.
  std::map<std::string, std::vector<std::string>> where;
  for (int i = 1; i <= targets; ++i)
    for (const auto& s : running_on(nodes[i])) where[s].push_back(nodes[i].name);
  std::map<std::string, std::string> placed;
  std::map<std::string, int> per_node;
  {
    pqxx::nontransaction tx(pg);
    for (const auto& r : tx.exec("SELECT engine_name, node FROM sessions")) {
      placed[r[0].as<std::string>()] = r[1].as<std::string>();
      ++per_node[r[1].as<std::string>()];
    }
  }
  int doubled = 0, misplaced = 0;
  for (const auto& [engine_name, node] : placed) {
    const auto& on = where[engine_name];
    if (on.size() > 1) ++doubled;
    if (on.size() != 1 || on.front() != node) ++misplaced;
  }
  const double moving_ms = ft.all_ms - ft.dead_ms;
  const double per_target = std::ceil(static_cast<double>(sessions) / targets);
  const double floor_ms = per_target * stagger_ms;  // what the stagger alone imposes after the death
  const double detect_floor_ms = (threshold - 1) * probe_ms;

  // ---------------------------------------------------------------- placement decisions/s
  auto sessions_table = [&] { return count_where(pg, "true"); };
  struct Rate {
    double per_s = 0, started_per_s = 0;
    long long ok = 0, failed = 0, table_before = 0, table_after = 0;
    sbbench::e2e::Cpu cpu;
    sbbench::PgWindow pg;
  };
  auto closed_loop = [&](const std::string& provider, const std::string& prefix) {
    std::atomic<bool> measuring{false}, stop{false};
    std::atomic<long long> ok{0}, failed{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < place_connections; ++c)
      threads.emplace_back([&, c] {
        httplib::Client http("127.0.0.1", intake_port);
        http.set_keep_alive(true);
        http.set_read_timeout(60, 0);
        for (long long k = 0; !stop; ++k) {
          json body = {{"id", prefix + std::to_string(c) + "-" + std::to_string(k)}, {"provider", provider}};
          if (provider == "engine") body["config"] = {{"group", "g"}};
          auto [st, b] = call(http, "POST", "/v1/sessions", keys[(c + k) % tenant_count], body.dump());
          if (!measuring) continue;
          if (st == 201) ++ok;
          else ++failed;
        }
      });
    std::this_thread::sleep_for(std::chrono::seconds(warmup_s));
    Rate r;
    auto pgc = bench.pg_counters();
    r.table_before = sessions_table();
    const auto starting0 = count_where(pg, "provider = 'engine' AND status <> 'STARTING'");
    pgc.begin();
    CpuWindow w(bench.system());
    measuring = true;
    const auto from = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(window_s));
    measuring = false;
    const double secs = ms_between(from, Clock::now()) / 1000.0;
    r.cpu = w.end(bench.system());
    r.pg = pgc.end();
    const auto started = count_where(pg, "provider = 'engine' AND status <> 'STARTING'") - starting0;
    r.table_after = sessions_table();
    stop = true;
    for (auto& t : threads) t.join();
    r.ok = ok;
    r.failed = failed;
    r.per_s = r.ok / secs;
    r.started_per_s = started / secs;
    return r;
  };
  const std::string load_place = load_average();
  const Rate baseline = closed_loop("simulator", "plain");
  const Rate placing = closed_loop("engine", "placed");
  const std::string load_after = load_average();

  // ---------------------------------------------------------------- summary
  const double n = sessions;
  std::printf("\n=== bench nodes summary: %d sessions on n1, %d target nodes (group g), probe %d ms × %d, "
              "max_starts_per_node %d, start_stagger_ms %d ± 30%%, engine start %d ms ===\n",
              sessions, targets, probe_ms, threshold, max_starts, stagger_ms, start_delay_ms);
  std::printf("%-60s %16s\n", "load average before the kill / before placement / after", (load_before + " / " + load_place + " / " + load_after).c_str());
  std::printf("%-60s %16s\n", "SIGKILL → n1 declared dead (ms)", fmt(ft.dead_ms).c_str());
  std::printf("%-60s %16s\n", "    floor from the probe settings ((threshold-1) × interval)", fmt(detect_floor_ms).c_str());
  std::printf("%-60s %16s\n", "SIGKILL → first session WORKING elsewhere (ms)", fmt(ft.first_ms).c_str());
  std::printf("%-60s %16s\n", "SIGKILL → 50 % / 99 % WORKING elsewhere (ms)", (fmt(ft.half_ms) + " / " + fmt(ft.p99_ms)).c_str());
  std::printf("%-60s %16s\n", ("SIGKILL → all " + std::to_string(sessions) + " WORKING elsewhere (ms)").c_str(), fmt(ft.all_ms).c_str());
  std::printf("%-60s %16s\n", "declared dead → all WORKING (ms)", fmt(moving_ms).c_str());
  std::printf("%-60s %16s\n", "    floor from the stagger (sessions per target × stagger)", fmt(floor_ms).c_str());
  std::printf("%-60s %16s\n", "    ratio measured / floor", fmt(moving_ms / floor_ms, 2).c_str());
  std::printf("%-60s %16s\n", "re-placed and started (sessions/s, after the death)", fmt(n / (moving_ms / 1000.0), 1).c_str());
  std::printf("%-60s %16s\n", "placer CPU over the failover (ms, % of one core)",
              (fmt(sbbench::ticks_to_us(placer_ticks) / 1000.0) + " / " + fmt(sbbench::ticks_to_us(placer_ticks) / (ft.all_ms * 10.0), 1) + " %").c_str());
  std::printf("%-60s %16s\n", "placer CPU per re-placed session (µs)", fmt(sbbench::ticks_to_us(placer_ticks) / n).c_str());
  std::printf("%-60s %16s\n", "all processes' CPU per re-placed session (µs)", fmt(sbbench::ticks_to_us(failover_cpu.total()) / n).c_str());
  std::printf("    %s\n", per_component(failover_cpu, n).c_str());
  // The same processes idle for as long (n1 left out: it is dead in the failover window).
  sbbench::e2e::Cpu idle_scaled, above_idle;
  for (const auto& [k, v] : idle_cpu.ticks)
    if (failover_cpu.ticks.count(k)) idle_scaled.ticks[k] = static_cast<long long>(v * ft.all_ms / idle_ms);
  for (const auto& [k, v] : failover_cpu.ticks) above_idle.ticks[k] = v - idle_scaled.ticks[k];
  std::printf("%-60s %16s\n", "    the same processes idle as long (µs per session)", fmt(sbbench::ticks_to_us(idle_scaled.total()) / n).c_str());
  std::printf("%-60s %16s\n", "    above idle (µs per session)", fmt(sbbench::ticks_to_us(above_idle.total()) / n).c_str());
  std::printf("    %s\n", per_component(above_idle, n).c_str());
  std::string spread;
  for (const auto& [node, count] : per_node) spread += (spread.empty() ? "" : ", ") + node + " " + std::to_string(count);
  std::printf("%-60s %16s\n", "sessions per node afterwards", spread.c_str());
  std::printf("%-60s %16s\n", "sessions running on two nodes / not (only) on their node", (std::to_string(doubled) + " / " + std::to_string(misplaced)).c_str());
  auto rate_lines = [&](const char* what, const Rate& r) {
    std::printf("%-60s %16s\n", what, fmt(r.per_s).c_str());
    std::printf("    CPU per create, all processes %s µs (%s)\n", fmt(sbbench::ticks_to_us(r.cpu.total()) / std::max<double>(1, r.ok)).c_str(),
                per_component(r.cpu, std::max<double>(1, r.ok), 1).c_str());
    std::printf("    PostgreSQL statements per create %s, commits %s; failed requests %lld; sessions in the table %lld → %lld\n",
                fmt(r.pg.statements / std::max<double>(1, r.ok), 2).c_str(), fmt(r.pg.commits / std::max<double>(1, r.ok), 2).c_str(), r.failed,
                r.table_before, r.table_after);
    for (const auto& [calls, q] : r.pg.top) std::printf("    %8.2f  %s\n", calls / std::max<double>(1, r.ok), q.c_str());
  };
  rate_lines("baseline: POST /v1/sessions, no placement (creates/s)", baseline);
  rate_lines("placement: POST /v1/sessions engine, group g (decisions/s)", placing);
  std::printf("%-60s %16s\n", "    ratio placement / baseline", fmt(placing.per_s / std::max(1.0, baseline.per_s), 2).c_str());
  std::printf("%-60s %16s\n", "    engine starts done in the window (sessions/s)", fmt(placing.started_per_s).c_str());
  std::fflush(stdout);

  CHECK(doubled == 0);
  CHECK(misplaced == 0);
  CHECK(per_node.count("n1") == 0);
  CHECK(placing.ok > 0);
  CHECK(baseline.ok > 0);
}
