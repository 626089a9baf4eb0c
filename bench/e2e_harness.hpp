#pragma once
// What the end-to-end benchmarks share (bench_pipeline, bench_receipts): the system's processes
// started from the built binary, the HTTP load (closed and open loop), the measuring windows
// (CPU of every process, the servers' own counters) and latency from request to webhook.
// Nothing of switchboard is linked: the system is driven from outside.
#include <catch2/catch.hpp>
#include <httplib.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_util.hpp"
#include "receiver.hpp"
#include "system_probe.hpp"

extern char** environ;

namespace sbbench::e2e {

using nlohmann::json;


inline const char* const kLanes[] = {"high", "default", "low"};

inline std::string need_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) FAIL(std::string(name) + " is not set: run the benchmark through scripts/bench");
  return v;
}

inline std::string fmt(double v, int decimals = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// The roles' listen ports: fixed, below the ephemeral range (a port the kernel hands out to
// clients can be taken by a loopback connection between our check and the role's bind).
inline bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int yes = 1;  // as the roles bind: connections of an earlier run in TIME_WAIT don't count
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// ------------------------------------------------------------------ processes

// One process of the system under test: `switchboard --config CFG ARGS…`, output to a log file,
// environment without SWITCHBOARD_* (settings come from the config file only). SIGKILLed if
// still alive when destroyed, and by the kernel if the thread that started it ends first.
class Proc {
 public:
  Proc(const std::string& label, const std::vector<std::string>& args, const std::string& log_path) : label_(label) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind("SWITCHBOARD_", 0) != 0) env.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) FAIL("cannot open " + log_path);
    const int parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // Never outlive the benchmark, however it ends (a failed REQUIRE, a crash, SIGKILL).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int null_fd = ::open("/dev/null", O_RDONLY);
      dup2(null_fd, 0);
      dup2(log_fd, 1);
      dup2(log_fd, 2);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    ::close(log_fd);
    if (pid_ < 0) FAIL("cannot start " + args[0] + ": fork failed");
  }
  ~Proc() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait(5000);
    }
  }
  Proc(Proc&& o) noexcept : label_(std::move(o.label_)), pid_(o.pid_) { o.pid_ = -1; }
  int pid() const { return pid_; }
  const std::string& label() const { return label_; }
  // Exit status, or -1 while still running at the deadline.
  int wait(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (pid_ > 0) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      if (Clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }
  void stop(int grace_ms) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (wait(grace_ms) < 0) ::kill(pid_, SIGKILL), wait(5000);
  }

 private:
  std::string label_;
  int pid_ = -1;
};

// Runs a short CLI command to completion; returns its output (stdout+stderr, also appended to
// log_path) and fails unless it exits 0.
inline std::string run_cli(const std::vector<std::string>& args, const std::string& log_path) {
  static std::atomic<int> serial{0};
  static std::mutex log_mu;
  const std::string out_path = log_path + ".tmp" + std::to_string(serial++);
  int rc;
  {
    Proc p("cli", args, out_path);
    rc = p.wait(120000);
  }
  std::string out;
  {
    std::ifstream in(out_path);
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::filesystem::remove(out_path);
  {
    std::lock_guard lock(log_mu);
    std::ofstream(log_path, std::ios::app) << "$ " << args[3] << (args.size() > 4 ? " " + args[4] : "") << "\n" << out;
  }
  if (rc != 0) FAIL(args[3] + " exited " + std::to_string(rc) + ": " + out);
  return out;
}

struct Tenant {
  std::string name, key;
};

struct Sent {
  std::string id;
  Clock::time_point start;
};

// 64 keep-alive connections. Closed loop: each sends its next request as soon as the last one
// is answered. Open loop: request k is due at t0 + k/rate, taken by whichever connection is
// free; its latency starts at the due time (a late start counts against the system, so a
// saturated load shows up instead of hiding: coordinated omission) and late starts are counted.
class Load {
 public:
  Load(int port, std::vector<Tenant> tenants, int sessions, int connections)
      : port_(port), tenants_(std::move(tenants)), sessions_(sessions), connections_(connections) {}

  struct Phase {
    std::vector<Sent> sent;
    long long failures = 0, late = 0;
    std::map<int, long long> statuses;  // non-202 answers (0: no answer)
    double seconds = 0;
  };

  ~Load() {
    if (!threads_.empty()) stop();
  }

  // rate 0 = closed loop (as fast as answers come back), else open loop at `rate` requests/s.
  // Runs until stop().
  void start(double rate) {
    rate_ = rate;
    stopping_ = false;
    next_ = 0;
    t0_ = Clock::now();
    for (int c = 0; c < connections_; ++c) threads_.emplace_back([this, c] { run(c); });
  }
  Phase stop() {
    stopping_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
    Phase p;
    p.seconds = ms_between(t0_, Clock::now()) / 1000.0;
    std::lock_guard lock(mu_);
    p.sent.swap(sent_);
    p.failures = failures_;
    p.late = late_;
    p.statuses.swap(statuses_);
    failures_ = late_ = 0;
    return p;
  }
  long long accepted() const { return accepted_.load(); }

 private:
  void run(int) {
    httplib::Client http("127.0.0.1", port_);
    http.set_keep_alive(true);
    http.set_tcp_nodelay(true);
    http.set_read_timeout(60, 0);
    std::vector<Sent> mine;
    long long failed = 0, late = 0;
    std::map<int, long long> statuses;
    while (!stopping_) {
      const long long k = next_++;
      Clock::time_point due = Clock::now();
      if (rate_ > 0) {
        due = t0_ + std::chrono::nanoseconds(static_cast<long long>(k * 1e9 / rate_));
        while (!stopping_ && Clock::now() < due) std::this_thread::sleep_until(std::min(due, Clock::now() + std::chrono::milliseconds(50)));
        if (stopping_) break;
        if (Clock::now() - due > std::chrono::milliseconds(5)) ++late;
      }
      const auto& t = tenants_[k % tenants_.size()];
      const json body = {{"to", "+15550001234"},
                         {"text", "benchmark message " + std::to_string(k)},
                         {"priority", kLanes[k % 3]}};
      const std::string path = "/v1/sessions/s" + std::to_string((k / tenants_.size()) % sessions_) + "/messages";
      auto r = http.Post(path, httplib::Headers{{"Authorization", "Bearer " + t.key}}, body.dump(), "application/json");
      if (!r || r->status != 202) {
        ++failed;
        ++statuses[r ? r->status : 0];
        continue;
      }
      ++accepted_;
      mine.push_back({json::parse(r->body)["id"].get<std::string>(), due});
    }
    std::lock_guard lock(mu_);
    sent_.insert(sent_.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
    failures_ += failed;
    late_ += late;
    for (auto [s, n] : statuses) statuses_[s] += n;
  }

  int port_;
  std::vector<Tenant> tenants_;
  int sessions_, connections_;
  double rate_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<long long> next_{0}, accepted_{0};
  Clock::time_point t0_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<Sent> sent_;
  long long failures_ = 0, late_ = 0;
  std::map<int, long long> statuses_;
};

// ------------------------------------------------------------------ measuring windows

struct Cpu {
  std::map<std::string, long long> ticks;  // per component
  long long total() const {
    long long s = 0;
    for (const auto& [k, v] : ticks) s += v;
    return s;
  }
};

struct System {
  int broker = 0, postmaster = 0, redis = 0;
  std::vector<const Proc*> roles;
  // The servers scripts/bench started, from the pid files it exports.
  static System from_env() {
    System s;
    s.broker = sbbench::pid_from_file(need_env("SB_BENCH_KAFKA_PID_FILE"));
    s.postmaster = sbbench::pid_from_file(need_env("SB_BENCH_PG_PID_FILE"));
    s.redis = sbbench::pid_from_file(need_env("SB_BENCH_REDIS_PID_FILE"));
    REQUIRE(s.broker > 0);
    REQUIRE(s.postmaster > 0);
    REQUIRE(s.redis > 0);
    return s;
  }
  Cpu cpu() const {
    Cpu c;
    c.ticks["kafka broker"] = sbbench::own_ticks(broker);
    c.ticks["postgresql"] = sbbench::tree_ticks(postmaster);
    c.ticks["redis"] = sbbench::own_ticks(redis);
    for (const auto* p : roles)
      if (p->pid() > 0) c.ticks[p->label()] += sbbench::own_ticks(p->pid());
    return c;
  }
};

struct Window {
  double seconds = 0;
  long long delivered = 0, accepted = 0;
  Cpu cpu;
  long long broker_jit = 0;  // ticks of the broker's JIT compiler threads (part of its CPU)
  std::map<std::string, long long> kafka, redis;
  sbbench::PgWindow pg;
};

// Waits until every accepted message of `sent` reached the receiver (or the timeout passes).
inline std::unordered_map<std::string, Clock::time_point> delivered_at(sbbench::Receiver& rx) {
  std::unordered_map<std::string, Clock::time_point> at;
  for (const auto& a : rx.arrivals())
    if (!a.message_id.empty()) at.emplace(a.message_id, a.at);
  return at;
}

inline bool drain(sbbench::Receiver& rx, long long expected_healthy, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (static_cast<long long>(rx.healthy()) < expected_healthy && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return static_cast<long long>(rx.healthy()) >= expected_healthy;
}

struct Latency {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0, missing = 0;
};

inline Latency latency_of(const std::vector<Sent>& sent, const std::unordered_map<std::string, Clock::time_point>& at,
                   Clock::time_point from, Clock::time_point to) {
  std::vector<double> ms;
  Latency l;
  for (const auto& s : sent) {
    if (s.start < from || s.start >= to) continue;
    const auto it = at.find(s.id);
    if (it == at.end()) {
      ++l.missing;
      continue;
    }
    ms.push_back(ms_between(s.start, it->second));
  }
  l.n = ms.size();
  l.p50 = percentile(ms, 0.5);
  l.p99 = percentile(ms, 0.99);
  l.max = percentile(ms, 1.0);
  return l;
}

inline std::string breakdown(const std::map<std::string, long long>& m, double per) {
  std::vector<std::pair<long long, std::string>> v;
  for (const auto& [k, n] : m) v.emplace_back(n, k);
  std::sort(v.rbegin(), v.rend());
  std::string s;
  for (const auto& [n, k] : v) s += (s.empty() ? "" : ", ") + k + " " + fmt(n / per, 3);
  return s.empty() ? "-" : s;
}


}  // namespace sbbench::e2e
