// The sessions benchmark: the end-to-end path with receipts flowing back for every message,
// measured from outside like bench_pipeline (nothing of switchboard is linked).
//
//   setup       50 tenants × 4 engine sessions created through the API, each QR read from the
//               API and scanned at the simulator (the engine node "sim"), then paired
//   memory      extra idle paired sessions (SB_BENCH_IDLE_SESSIONS): the RSS our processes
//               gain per session
//   saturation  closed loop, 64 connections: HTTP POST → intake → lane → worker → engine
//               (simulator, 20 ms) → sent; the engine's signed message.ack webhooks (DEVICE,
//               READ) → intake → sb.callbacks → callbacks worker → delivered, read; each of the
//               three events → sb.events → dispatcher → the tenant's webhook endpoint
// Throughput counts messages whose message.read reached the receiver; CPU per message sums every
// process (broker, PostgreSQL, Redis, each role, the simulator) over the window.
#include <pqxx/pqxx>
#include <random>
#include <set>

#include "e2e_harness.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using namespace sbbench::e2e;

namespace {

// Resident set size of a process, in KiB (/proc/<pid>/status VmRSS).
long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

std::map<std::string, long> rss_of(const std::vector<Proc>& procs) {
  std::map<std::string, long> out;
  for (const auto& p : procs)
    if (p.pid() > 0) out[p.label()] = rss_kib(p.pid());
  return out;
}

// Message ids whose event of `type` reached the receiver, with the first arrival.
std::unordered_map<std::string, Clock::time_point> arrivals_of(sbbench::Receiver& rx, const std::string& type) {
  std::unordered_map<std::string, Clock::time_point> at;
  for (const auto& a : rx.arrivals())
    if (a.type == type && !a.message_id.empty()) at.emplace(a.message_id, a.at);
  return at;
}

std::size_t count_of(sbbench::Receiver& rx, const std::string& type) { return arrivals_of(rx, type).size(); }

}  // namespace

TEST_CASE("bench: sessions with receipts — send → sent → delivered → read, three events per message", "[.bench]") {
  const int tenant_count = env_int("SB_BENCH_TENANTS", 50);
  const int sessions = env_int("SB_BENCH_SESSIONS", 4);
  const int connections = env_int("SB_BENCH_CONNECTIONS", 64);
  const int warmup_s = env_int("SB_BENCH_WARMUP_S", 10);
  const int saturation_s = env_int("SB_BENCH_SATURATION_S", 30);
  const int latency_ms = env_int("SB_BENCH_PROVIDER_LATENCY_MS", 20);
  const int idle_sessions = env_int("SB_BENCH_IDLE_SESSIONS", 2000);

  const std::string bin = need_env("SWITCHBOARD_BIN");
  const std::string brokers = need_env("SWITCHBOARD_TEST_KAFKA_BROKERS");
  const std::string admin_url = need_env("SWITCHBOARD_TEST_POSTGRES_URL");
  const std::string redis_url = need_env("SWITCHBOARD_TEST_REDIS_URL");
  System sys = System::from_env();

  std::mt19937_64 rng(std::random_device{}());
  const std::string suffix = std::to_string(rng() % 100000000);
  const std::string db = "sb_bench_" + suffix, prefix = "r" + suffix + ".";
  const std::string log_dir = need_env("SWITCHBOARD_TEST_LOG_DIR") + "/receipts-" + suffix;
  std::filesystem::create_directories(log_dir);
  std::printf("bench receipts: logs and config in %s\n", log_dir.c_str());
  std::unique_ptr<sbbench::JmxCounters> jmx;
  if (const char* j = std::getenv("SB_BENCH_KAFKA_JMX"); j && *j)
    jmx = std::make_unique<sbbench::JmxCounters>(need_env("SB_BENCH_JMX_TOOL"), j);

  {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE DATABASE " + db);
    tx.exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  }
  const auto db_url = admin_url.substr(0, admin_url.rfind('/') + 1) + db;
  sbbench::Receiver rx;
  const int base_port = env_int("SB_BENCH_BASE_PORT", 24097);
  const int intake_port = base_port, sim_port = base_port + 1;
  for (int p : {intake_port, sim_port})
    if (!port_free(p)) FAIL("port " + std::to_string(p) + " is taken: set SB_BENCH_BASE_PORT");
  const std::string config = log_dir + "/switchboard.yaml";
  {
    std::ofstream out(config);
    // The deployment's keys; the simulator is the engine node "sim" (WAHA's shape), its acks
    // for DEVICE 50 ms and READ 100 ms after each send (its defaults).
    out << "kafka:\n  brokers: \"" << brokers << "\"\n  topic_prefix: \"" << prefix << "\"\n  partitions: 12\n"
        << "postgres:\n  url: \"" << db_url << "\"\n"
        << "redis:\n  url: \"" << redis_url << "\"\n"
        << "log:\n  level: warn\n  format: text\n"
        << "secrets:\n  key: \"YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy4uLi4=\"\n"  // bench-only, 32 bytes
        << "intake:\n  listen: \"127.0.0.1:" << intake_port << "\"\n"
        << "engine:\n  default_node: sim\n  nodes:\n    sim:\n      url: \"http://127.0.0.1:" << sim_port
        << "\"\n      webhook_hmac_key: \"bench-engine-hmac\"\n      capacity: 100000\n"
        << "provider:\n  url: \"http://127.0.0.1:" << sim_port << "\"\n"
        << "simulator:\n  listen: \"127.0.0.1:" << sim_port << "\"\n  latency_ms: " << latency_ms
        << "\n  latency_jitter_ms: 0\n  engine:\n    start_delay_ms: 20\n"
        << "webhooks:\n  allow_cidrs: \"127.0.0.0/8\"\n";
  }
  auto sb_args = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {bin, "--config", config});
    return args;
  };
  const std::string cli_log = log_dir + "/cli.log";
  run_cli(sb_args({"migrate"}), cli_log);
  run_cli(sb_args({"topics", "ensure"}), cli_log);
  std::vector<Tenant> tenants(tenant_count);
  for (int i = 0; i < tenant_count; ++i) {
    auto& t = tenants[i];
    t.name = "bench-" + std::to_string(i);
    const auto out = run_cli(sb_args({"tenant", "create", t.name}), cli_log);
    const auto trimmed = out.substr(0, out.find_last_not_of("\n") + 1);
    t.key = trimmed.substr(trimmed.rfind('\n') + 1);
  }

  std::vector<Proc> procs;
  procs.reserve(8);
  auto spawn = [&](const std::string& label, std::vector<std::string> args) {
    procs.emplace_back(label, sb_args(std::move(args)), log_dir + "/" + label + ".log");
  };
  spawn("simulator", {"simulator"});
  spawn("intake", {"intake"});
  for (const char* lane : kLanes) spawn(std::string("worker-") + lane, {"worker", "--lane", lane});
  spawn("callbacks", {"callbacks"});
  spawn("webhooks", {"webhooks"});
  for (const auto& p : procs) sys.roles.push_back(&p);
  httplib::Client api("127.0.0.1", intake_port);
  api.set_read_timeout(30, 0);
  REQUIRE(sbbench::eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; }, 60000));
  auto call = [&](httplib::Client& c, const std::string& method, const std::string& path, const std::string& key,
                  const json& body = nullptr) {
    httplib::Headers h{{"Authorization", "Bearer " + key}};
    auto r = method == "GET" ? c.Get(path, h) : c.Post(path, h, body.is_null() ? "" : body.dump(), "application/json");
    REQUIRE(r);
    return std::make_pair(r->status, r->body.empty() ? json() : json::parse(r->body));
  };
  for (int i = 0; i < tenant_count; ++i) {
    const json hook = {{"url", rx.url(false, i)}, {"events", {"message.sent", "message.delivered", "message.read", "message.failed"}}};
    REQUIRE(call(api, "POST", "/v1/webhooks", tenants[i].key, hook).first == 201);
  }

  // Sessions as a user makes them: created, QR from the API, scanned at the "phone".
  auto pair_all = [&](const std::vector<std::pair<int, std::string>>& todo) {
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < 8; ++w)
      pool.emplace_back([&] {
        httplib::Client c("127.0.0.1", intake_port), phone("127.0.0.1", sim_port);
        c.set_read_timeout(30, 0);
        for (auto k = next++; k < todo.size(); k = next++) {
          const auto& [t, name] = todo[k];
          auto [status, body] = call(c, "POST", "/v1/sessions", tenants[t].key, json{{"id", name}, {"provider", "engine"}});
          INFO(body.dump());
          REQUIRE(status == 201);
          std::string qr;
          REQUIRE(sbbench::eventually([&] {
            auto [s, b] = call(c, "GET", "/v1/sessions/" + name + "/qr", tenants[t].key);
            if (s == 200) qr = b["value"];
            return s == 200;
          }, 120000, 50));
          auto r = phone.Post("/sim/scan", json{{"qr", qr}}.dump(), "application/json");
          REQUIRE(r);
          REQUIRE(r->status == 200);
        }
      });
    for (auto& t : pool) t.join();
    for (const auto& [t, name] : todo)
      REQUIRE(sbbench::eventually([&, t = t, name = name] {
        return call(api, "GET", "/v1/sessions/" + name, tenants[t].key).second["status"] == "WORKING";
      }, 120000, 50));
  };
  std::vector<std::pair<int, std::string>> busy, idle;
  for (int t = 0; t < tenant_count; ++t)
    for (int s = 0; s < sessions; ++s) busy.emplace_back(t, "s" + std::to_string(s));
  for (int k = 0; k < idle_sessions; ++k) idle.emplace_back(k % tenant_count, "idle" + std::to_string(k / tenant_count));
  const auto t_pair = Clock::now();
  pair_all(busy);
  std::printf("bench receipts: %zu sessions created and paired through the API in %.1f s\n", busy.size(),
              ms_between(t_pair, Clock::now()) / 1000.0);
  const auto rss_before = rss_of(procs);
  pair_all(idle);
  const auto rss_after = rss_of(procs);
  std::string mem_parts;
  long ours_kib = 0;
  for (const auto& [label, kib] : rss_after) {
    const long grown = kib - rss_before.at(label);
    if (label != "simulator") ours_kib += grown;
    mem_parts += (mem_parts.empty() ? "" : ", ") + label + " " + fmt(idle_sessions ? grown * 1024.0 / idle_sessions : 0);
  }

  sbbench::PgCounters pg(admin_url, db);
  const auto redis_host_port = redis_url.substr(redis_url.find("://") + 3);
  sbbench::RedisCounters redis(redis_host_port.substr(0, redis_host_port.rfind(':')),
                               std::stoi(redis_host_port.substr(redis_host_port.rfind(':') + 1)));

  // Warm-up: every tenant's endpoint has seen a read receipt, then warmup_s more.
  Load load(intake_port, tenants, sessions, connections);
  load.start(0);
  REQUIRE(sbbench::eventually([&] {
    std::set<int> endpoints;
    for (const auto& a : rx.arrivals())
      if (a.type == "message.read") endpoints.insert(a.endpoint);
    return static_cast<int>(endpoints.size()) >= tenant_count;
  }, 120000, 200));
  std::this_thread::sleep_for(std::chrono::seconds(warmup_s));

  // Saturation.
  Window w;
  pg.begin();
  redis.begin();
  w.kafka = jmx ? jmx->snapshot() : std::map<std::string, long long>{};
  w.cpu = sys.cpu();
  const auto reads0 = count_of(rx, "message.read");
  const auto events0 = rx.healthy();
  const auto from = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(saturation_s));
  const auto to = Clock::now();
  const auto cpu = sys.cpu();
  for (auto& [k, v] : w.cpu.ticks) v = cpu.ticks.at(k) - v;
  const long long reads = static_cast<long long>(count_of(rx, "message.read") - reads0);
  const long long delivered_events = static_cast<long long>(rx.healthy() - events0);
  if (jmx) w.kafka = sbbench::delta(w.kafka, jmx->snapshot());
  w.pg = pg.end();
  w.redis = redis.end();
  w.seconds = ms_between(from, to) / 1000.0;
  auto phase = load.stop();
  // Every accepted message ends read, its three events at the endpoint.
  REQUIRE(sbbench::eventually([&] { return count_of(rx, "message.read") >= static_cast<std::size_t>(load.accepted()); }, 120000, 200));
  const auto sent_at = arrivals_of(rx, "message.sent"), read_at = arrivals_of(rx, "message.read");
  const auto sent_lat = latency_of(phase.sent, sent_at, from, to), read_lat = latency_of(phase.sent, read_at, from, to);

  const double n = static_cast<double>(reads);
  std::string cpu_parts;
  for (const auto& [k, v] : w.cpu.ticks) cpu_parts += (cpu_parts.empty() ? "" : ", ") + k + " " + fmt(sbbench::ticks_to_us(v) / n);
  std::printf("\n=== bench receipts summary: %d tenants × %d engine sessions, %d connections, engine %d ms, "
              "acks DEVICE +50 ms, READ +100 ms, %d s at saturation ===\n",
              tenant_count, sessions, connections, latency_ms, saturation_s);
  std::printf("%-52s %22s\n", "messages read end to end (msg/s)", fmt(n / w.seconds).c_str());
  std::printf("%-52s %22s\n", "webhook deliveries (events/s)", fmt(delivered_events / w.seconds).c_str());
  std::printf("%-52s %22s\n", "events delivered per message", fmt(delivered_events / n, 2).c_str());
  std::printf("%-52s %22s\n", "request → message.sent p50 / p99 (ms)", (fmt(sent_lat.p50, 1) + " / " + fmt(sent_lat.p99, 1)).c_str());
  std::printf("%-52s %22s\n", "request → message.read p50 / p99 (ms)", (fmt(read_lat.p50, 1) + " / " + fmt(read_lat.p99, 1)).c_str());
  std::printf("%-52s %22s\n", "CPU per message, all processes (µs)", fmt(sbbench::ticks_to_us(w.cpu.total()) / n).c_str());
  std::printf("    %s\n", cpu_parts.c_str());
  std::printf("%-52s %22s\n", "Kafka requests per message", jmx ? fmt(sbbench::sum(w.kafka) / n, 3).c_str() : "n/a");
  std::printf("    %s\n", breakdown(w.kafka, n).c_str());
  std::printf("%-52s %22s\n", "PostgreSQL statements per message", fmt(w.pg.statements / n, 3).c_str());
  for (const auto& [calls, q] : w.pg.top) std::printf("    %8.3f  %s\n", calls / n, q.c_str());
  std::printf("%-52s %22s\n", ("memory per idle paired session, our processes (B, " + std::to_string(idle_sessions) + " sessions)").c_str(),
              fmt(idle_sessions ? ours_kib * 1024.0 / idle_sessions : 0).c_str());
  std::printf("    %s (bytes per session; the simulator is the engine's)\n", mem_parts.c_str());
  std::printf("%-52s %22s\n", "failed requests at saturation", std::to_string(phase.failures).c_str());
  std::fflush(stdout);

  for (auto& p : procs) p.stop(20000);
  procs.clear();
  try {
    pqxx::connection admin(admin_url);
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The server is thrown away by scripts/bench anyway.
  }
  CHECK(reads > 0);
  CHECK(phase.failures == 0);
}
