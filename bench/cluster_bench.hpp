#pragma once
// What bench_nodes and bench_pacing share: a throw-away database and topic prefix on the
// servers scripts/bench started, config files written with only the keys a deployment sets
// (section by section, so each role's file can differ in one section: a simulator's listen
// address, a worker's ops port), every process of the system started from the built binary and
// counted in System for CPU, and the roles' Prometheus counters read over HTTP. Like
// e2e_harness.hpp, nothing of switchboard is linked.
#include <list>
#include <pqxx/pqxx>
#include <random>
#include <sstream>

#include "e2e_harness.hpp"

namespace sbbench::cluster {

using e2e::fmt;
using e2e::need_env;
using e2e::Proc;

// Resident set size and thread count of a process (/proc/<pid>/status).
struct ProcMem {
  long rss_kib = 0;
  int threads = 0;
};
inline ProcMem proc_mem(int pid) {
  ProcMem m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_kib = std::stol(line.substr(6));
    if (line.rfind("Threads:", 0) == 0) m.threads = std::stoi(line.substr(8));
  }
  return m;
}

// Sum of every sample of `name` (any labels) on an ops endpoint's /metrics; -1 if unreachable.
inline double metric_sum(int port, const std::string& name) {
  httplib::Client ops("127.0.0.1", port);
  ops.set_read_timeout(10, 0);
  auto r = ops.Get("/metrics");
  if (!r || r->status != 200) return -1;
  std::istringstream in(r->body);
  double sum = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

// A config file as sections ("kafka", "simulator", …) of indented YAML lines.
using Sections = std::map<std::string, std::string>;

class Bench {
 public:
  // `name` names the database, topic prefix and log directory.
  explicit Bench(const std::string& name)
      : bin_(need_env("SWITCHBOARD_BIN")),
        admin_url_(need_env("SWITCHBOARD_TEST_POSTGRES_URL")),
        redis_url_(need_env("SWITCHBOARD_TEST_REDIS_URL")),
        sys_(e2e::System::from_env()) {
    std::mt19937_64 rng(std::random_device{}());
    const std::string suffix = std::to_string(rng() % 100000000);
    db_ = "sb_bench_" + suffix;
    log_dir_ = need_env("SWITCHBOARD_TEST_LOG_DIR") + "/" + name + "-" + suffix;
    std::filesystem::create_directories(log_dir_);
    std::printf("bench %s: logs and configs in %s\n", name.c_str(), log_dir_.c_str());
    {
      pqxx::connection admin(admin_url_);
      pqxx::nontransaction tx(admin);
      tx.exec("CREATE DATABASE " + db_);
      tx.exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }
    db_url_ = admin_url_.substr(0, admin_url_.rfind('/') + 1) + db_;
    base_ = {{"kafka", "  brokers: \"" + need_env("SWITCHBOARD_TEST_KAFKA_BROKERS") + "\"\n  topic_prefix: \"" + name.substr(0, 1) +
                           suffix + ".\"\n  partitions: 12\n"},
             {"postgres", "  url: \"" + db_url_ + "\"\n"},
             {"redis", "  url: \"" + redis_url_ + "\"\n"},
             {"log", "  level: warn\n  format: text\n"},
             {"secrets", "  key: \"YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy4uLi4=\"\n"}};  // bench-only, 32 bytes
    const int first = env_int("SB_BENCH_BASE_PORT", 24097);
    for (int p = first; p < first + kPorts; ++p)
      if (!e2e::port_free(p)) FAIL("port " + std::to_string(p) + " is taken: set SB_BENCH_BASE_PORT (this bench uses it and the next " +
                                   std::to_string(kPorts - 1) + ")");
    next_port_ = first;
  }
  ~Bench() {
    for (auto& p : procs_) p.stop(20000);
    procs_.clear();
    try {
      pqxx::connection admin(admin_url_);
      pqxx::nontransaction tx(admin);
      tx.exec("DROP DATABASE IF EXISTS " + db_ + " WITH (FORCE)");
    } catch (const std::exception&) {
      // The server is thrown away by scripts/bench anyway.
    }
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  static constexpr int kPorts = 20;  // the roles' listen ports: SB_BENCH_BASE_PORT and the next 19
  int port() {
    if (next_port_ >= env_int("SB_BENCH_BASE_PORT", 24097) + kPorts) FAIL("the bench needs more than " + std::to_string(kPorts) + " ports");
    return next_port_++;
  }

  // Writes the base sections with `extra` added (a section in both: extra's lines appended).
  std::string write_config(const std::string& file, const Sections& extra) {
    Sections all = base_;
    for (const auto& [k, v] : extra) all[k] += v;
    const std::string path = log_dir_ + "/" + file;
    std::ofstream out(path);
    for (const auto& [k, v] : all) out << k << ":\n" << v;
    return path;
  }

  // `switchboard --config CFG ARGS…` to completion; its output (fails unless it exits 0).
  std::string cli(const std::string& config, std::vector<std::string> args) {
    args.insert(args.begin(), {bin_, "--config", config});
    return e2e::run_cli(args, log_dir_ + "/cli.log");
  }
  // A role, counted in the system's CPU.
  Proc& spawn(const std::string& label, const std::string& config, std::vector<std::string> args) {
    args.insert(args.begin(), {bin_, "--config", config});
    procs_.emplace_back(label, args, log_dir_ + "/" + label + ".log");
    sys_.roles.push_back(&procs_.back());
    return procs_.back();
  }
  // A new tenant's API key (`tenant create` prints it last).
  std::string tenant(const std::string& config, const std::string& name) {
    const auto out = cli(config, {"tenant", "create", name});
    const auto trimmed = out.substr(0, out.find_last_not_of('\n') + 1);
    return trimmed.substr(trimmed.rfind('\n') + 1);
  }

  pqxx::connection connect() const { return pqxx::connection(db_url_); }
  sbbench::PgCounters pg_counters() const { return sbbench::PgCounters(admin_url_, db_); }
  std::unique_ptr<sbbench::RedisCounters> redis_counters() const {
    const auto hp = redis_url_.substr(redis_url_.find("://") + 3);
    return std::make_unique<sbbench::RedisCounters>(hp.substr(0, hp.rfind(':')), std::stoi(hp.substr(hp.rfind(':') + 1)));
  }
  const e2e::System& system() const { return sys_; }
  const std::string& log_dir() const { return log_dir_; }

 private:
  std::string bin_, admin_url_, redis_url_, db_, db_url_, log_dir_;
  e2e::System sys_;
  Sections base_;
  std::list<Proc> procs_;  // stable addresses: sys_.roles points at them
  int next_port_ = 0;
};

// CPU of every process over a window, printed as a total and per component.
struct CpuWindow {
  e2e::Cpu start;
  explicit CpuWindow(const e2e::System& s) : start(s.cpu()) {}
  e2e::Cpu end(const e2e::System& s) const {
    e2e::Cpu now = s.cpu(), d;
    for (const auto& [k, v] : now.ticks)
      if (auto it = start.ticks.find(k); it != start.ticks.end()) d.ticks[k] = v - it->second;
    return d;
  }
};

inline std::string per_component(const e2e::Cpu& c, double per, double at_least_us = 0) {
  std::string out;
  for (const auto& [k, v] : c.ticks) {
    const double us = sbbench::ticks_to_us(v) / per;
    if (us < at_least_us) continue;
    out += (out.empty() ? "" : ", ") + k + " " + fmt(us);
  }
  return out;
}

inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Runs f(client, i) for i in [0, n) on `threads` threads, each with its own keep-alive intake
// connection. f returns "" or what went wrong; the first failures are returned (assertions stay
// on the calling thread).
inline std::vector<std::string> in_parallel(int port, int n, int threads,
                                            const std::function<std::string(httplib::Client&, int)>& f) {
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_keep_alive(true);
      c.set_read_timeout(60, 0);
      for (int i = next++; i < n; i = next++)
        if (auto what = f(c, i); !what.empty()) {
          std::lock_guard lock(mu);
          if (failures.size() < 10) failures.push_back(std::move(what));
        }
    });
  for (auto& t : pool) t.join();
  return failures;
}

// One HTTP call with a bearer key; status and body ("" when no answer).
inline std::pair<int, std::string> call(httplib::Client& c, const std::string& method, const std::string& path,
                                        const std::string& key, const std::string& body = "") {
  httplib::Headers h{{"Authorization", "Bearer " + key}};
  httplib::Result r = method == "GET"     ? c.Get(path, h)
                      : method == "PATCH" ? c.Patch(path, h, body, "application/json")
                                          : c.Post(path, h, body, "application/json");
  if (!r) return {0, ""};
  return {r->status, r->body};
}

}  // namespace sbbench::cluster
