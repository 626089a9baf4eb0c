#pragma once
// What the end-to-end benchmark reads from outside the system under test, so it measures
// today's processes and any rewrite of them alike: CPU time from /proc, the Kafka broker's
// request counters over JMX (tools/JmxCount.java), PostgreSQL's pg_stat_statements and
// pg_stat_database, Redis's INFO commandstats. No switchboard code is linked for any of it.
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbbench {

// ------------------------------------------------------------------ /proc CPU time

struct ProcStat {
  bool ok = false;
  int ppid = 0;
  long long own_ticks = 0;       // utime + stime (all threads)
  long long children_ticks = 0;  // cutime + cstime (waited-for children that exited)
};

inline ProcStat read_proc_stat(int pid) {
  ProcStat s;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return s;
  const auto close = line.rfind(')');  // the command name may contain spaces and parentheses
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string tok; rest >> tok;) f.push_back(tok);
  if (f.size() < 15) return s;  // f[0] is field 3 (state)
  s.ok = true;
  s.ppid = std::stoi(f[1]);
  s.own_ticks = std::stoll(f[11]) + std::stoll(f[12]);
  s.children_ticks = std::stoll(f[13]) + std::stoll(f[14]);
  return s;
}

inline double ticks_to_us(long long ticks) { return ticks * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK)); }

// CPU ticks of a process; for a process tree root such as the postmaster, also every live
// child's ticks plus what exited children left in the root's cutime/cstime, so backends that
// come and go in between two readings are accounted for.
inline long long tree_ticks(int root) {
  const auto r = read_proc_stat(root);
  if (!r.ok) return 0;
  long long total = r.own_ticks + r.children_ticks;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto c = read_proc_stat(std::stoi(name));
    if (c.ok && c.ppid == root) total += c.own_ticks + c.children_ticks;
  }
  return total;
}

// CPU ticks of a JVM's JIT compiler threads ("C1 CompilerThre…", "C2 CompilerThre…"): the
// broker compiles its hot paths for a minute or more after start, and on a 2-core box that
// compiling is a large share of what a short window would charge to the messages.
inline long long jit_ticks(int pid) {
  long long total = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("C1 Compiler", 0) != 0 && name.rfind("C2 Compiler", 0) != 0) continue;
    std::ifstream in(t.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> f;
    for (std::string tok; rest >> tok;) f.push_back(tok);
    if (f.size() >= 13) total += std::stoll(f[11]) + std::stoll(f[12]);
  }
  return total;
}

inline long long own_ticks(int pid) {
  const auto r = read_proc_stat(pid);
  return r.ok ? r.own_ticks : 0;
}

inline int pid_from_file(const std::string& path) {
  std::ifstream in(path);
  int pid = 0;
  in >> pid;
  return pid;
}

// ------------------------------------------------------------------ Kafka JMX

// A long-lived `java tools/JmxCount.java HOST:PORT`: one snapshot per line written to it.
class JmxCounters {
 public:
  JmxCounters(const std::string& tool, const std::string& address) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      execlp("java", "java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", tool.c_str(), address.c_str(), nullptr);
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    out_ = fdopen(to_child[1], "w");
    in_ = fdopen(from_child[0], "r");
    if (read_line() != "ready") throw std::runtime_error("JmxCount did not start (is the broker's JMX port open?)");
  }
  ~JmxCounters() {
    if (out_) fclose(out_);
    if (in_) fclose(in_);
    if (pid_ > 0) {
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  JmxCounters(const JmxCounters&) = delete;
  JmxCounters& operator=(const JmxCounters&) = delete;

  // request type → requests received since the broker started.
  std::map<std::string, long long> snapshot() {
    std::fputs("snap\n", out_);
    std::fflush(out_);
    std::map<std::string, long long> counts;
    for (std::string line = read_line(); line != "end"; line = read_line()) {
      if (line.empty()) throw std::runtime_error("JmxCount exited");
      const auto sp = line.rfind(' ');
      const auto name = line.substr(0, sp);
      // The single node is also its own KRaft controller: its heartbeats and registrations to
      // itself are not the system's traffic.
      if (name == "BrokerHeartbeat" || name == "BrokerRegistration" || name == "ControllerRegistration") continue;
      // FetchConsumer and FetchFollower are the broker's split of Fetch: counted in it already.
      if (name == "FetchConsumer" || name == "FetchFollower") continue;
      counts[name] = std::stoll(line.substr(sp + 1));
    }
    return counts;
  }

 private:
  std::string read_line() {
    char buf[512];
    if (!std::fgets(buf, sizeof buf, in_)) return {};
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  int pid_ = -1;
  FILE* out_ = nullptr;
  FILE* in_ = nullptr;
};

inline std::map<std::string, long long> delta(const std::map<std::string, long long>& a,
                                              const std::map<std::string, long long>& b) {
  std::map<std::string, long long> d;
  for (const auto& [k, v] : b) {
    const auto it = a.find(k);
    const long long diff = v - (it == a.end() ? 0 : it->second);
    if (diff) d[k] = diff;
  }
  return d;
}

inline long long sum(const std::map<std::string, long long>& m) {
  long long s = 0;
  for (const auto& [k, v] : m) s += v;
  return s;
}

// ------------------------------------------------------------------ PostgreSQL

struct PgWindow {
  long long statements = 0;  // pg_stat_statements calls in the bench database (utility ones included)
  long long commits = 0;     // pg_stat_database.xact_commit delta
  std::vector<std::pair<long long, std::string>> top;  // calls, query (the busiest)
};

// Reads the server's own counters about one database, from a connection to another one (so the
// probe's own statements are not counted).
class PgCounters {
 public:
  PgCounters(const std::string& admin_url, std::string db) : conn_(admin_url), db_(std::move(db)) {}
  void begin() {
    pqxx::nontransaction tx(conn_);
    tx.exec("SELECT pg_stat_statements_reset()");
    commits0_ = commits(tx);
  }
  PgWindow end() {
    PgWindow w;
    pqxx::nontransaction tx(conn_);
    w.commits = commits(tx) - commits0_;
    const auto q = "SELECT s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements s "
                   "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = " + tx.quote(db_) + " ORDER BY s.calls DESC";
    for (const auto& row : tx.exec(q)) {
      const auto calls = row[0].as<long long>();
      w.statements += calls;
      if (w.top.size() < 10) w.top.emplace_back(calls, row[1].as<std::string>());
    }
    return w;
  }

 private:
  long long commits(pqxx::nontransaction& tx) {
    // Busy backends flush their counts about once a second, so both ends of a window lag alike;
    // clearing our snapshot makes this read see what has been flushed so far.
    tx.exec("SELECT pg_stat_clear_snapshot()");
    return tx.exec1("SELECT xact_commit FROM pg_stat_database WHERE datname = " + tx.quote(db_))[0].as<long long>();
  }
  pqxx::connection conn_;
  std::string db_;
  long long commits0_ = 0;
};

// ------------------------------------------------------------------ Redis

class RedisCounters {
 public:
  RedisCounters(const std::string& host, int port) : ctx_(redisConnect(host.c_str(), port)) {
    if (!ctx_ || ctx_->err) throw std::runtime_error("cannot connect to Redis at " + host + ":" + std::to_string(port));
  }
  ~RedisCounters() { redisFree(ctx_); }
  RedisCounters(const RedisCounters&) = delete;
  RedisCounters& operator=(const RedisCounters&) = delete;
  void begin() { command("CONFIG RESETSTAT"); }
  // command → calls since begin() (this probe's own CONFIG/INFO left out).
  std::map<std::string, long long> end() {
    std::map<std::string, long long> calls;
    std::istringstream in(command("INFO commandstats"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("cmdstat_", 0) != 0) continue;
      const auto colon = line.find(':');
      const auto name = line.substr(8, colon - 8);
      const auto c = line.find("calls=", colon);
      // Redis 7 names subcommands "config|resetstat".
      if (c == std::string::npos || name.rfind("config", 0) == 0 || name == "info") continue;
      calls[name] = std::stoll(line.substr(c + 6));
    }
    return calls;
  }

 private:
  std::string command(const char* cmd) {
    auto* r = static_cast<redisReply*>(redisCommand(ctx_, cmd));
    if (!r) throw std::runtime_error(std::string("Redis: ") + cmd + " failed");
    std::string s = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS
                        ? std::string(r->str, r->len)
                        : std::string();
    freeReplyObject(r);
    return s;
  }
  redisContext* ctx_;
};

}  // namespace sbbench
