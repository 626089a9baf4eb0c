// Intake alone (no workers): how many sends/s the event-driven HTTP server turns into recorded,
// broker-acked commands, and what idle keep-alive connections cost it.
//
//   load   SB_BENCH_CONNECTIONS (64) keep-alive connections, closed loop, SB_BENCH_MESSAGES
//          (50000) POSTs after a warm-up; each 202 means PostgreSQL committed the row and Kafka
//          acked the record. The load generator is one Asio thread (a thread per connection
//          would cost the 2-core box more than the server does).
//   idle   SB_BENCH_IDLE_CONNECTIONS (10000) connections that each made one request and then
//          stay open; intake's CPU (utime+stime from /proc/<pid>/stat) over 10 s, compared with
//          10 s with no connections.
//   cpu    per request of the load window: intake, and (when scripts/bench names their pid files)
//          the Kafka broker and PostgreSQL (postmaster + backends), and the load generator.
//   callgrind  SB_BENCH_CALLGRIND_DIR=DIR when intake runs under `valgrind --tool=callgrind
//          --callgrind-out-file=DIR/callgrind.out.%p` (a SWITCHBOARD_BIN wrapper): the counters
//          are zeroed before the load and dumped after it, and instructions per request printed
//          (repeatable where CPU time on a shared box is not).
#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "bench_util.hpp"
#include "stack.hpp"
#include "system_probe.hpp"
#include "switchboard/core/command.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using sbbench::percentile;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// CPU seconds (user + system) a process has used so far.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// One keep-alive connection sending pre-built requests back to back.
struct LoadConn : std::enable_shared_from_this<LoadConn> {
  tcp::socket sock;
  std::string request;
  std::string in;
  std::array<char, 16384> buf{};
  Clock::time_point start;
  std::function<bool()> take;  // false: no more requests to send
  std::function<void(double ms, bool ok)> done;

  explicit LoadConn(asio::io_context& io) : sock(io) {}

  void send() {
    if (!take()) return;
    start = Clock::now();
    asio::async_write(sock, asio::buffer(request), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      if (ec) return self->done(0, false);
      self->read();
    });
  }
  void read() {
    sock.async_read_some(asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (ec) return self->done(0, false);
      self->in.append(self->buf.data(), n);
      const auto end = self->in.find("\r\n\r\n");
      if (end == std::string::npos) return self->read();
      std::size_t length = 0;
      const auto cl = self->in.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) length = std::stoul(self->in.substr(cl + 16));
      if (self->in.size() < end + 4 + length) return self->read();
      const bool ok = self->in.compare(9, 3, "202") == 0 || self->in.compare(9, 3, "200") == 0;
      self->in.erase(0, end + 4 + length);
      self->done(ms_between(self->start, Clock::now()), ok);
      self->send();
    });
  }
};

// This process's CPU seconds (the load generator: the bench does nothing else meanwhile).
double own_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// CPU µs of a server named by a pid file scripts/bench exports (0 when not set or unreadable).
long long server_ticks(const char* pid_file_env, bool tree) {
  const char* f = std::getenv(pid_file_env);
  if (!f || !*f) return -1;
  const int pid = sbbench::pid_from_file(f);
  if (pid <= 0) return -1;
  return tree ? sbbench::tree_ticks(pid) : sbbench::own_ticks(pid);
}

// Instructions of the intake process under callgrind: zero, or dump and read the dump's total.
bool callgrind(const std::string& action, int pid) {
  return std::system(("callgrind_control " + action + " " + std::to_string(pid) + " > /dev/null").c_str()) == 0;
}
long long callgrind_dumped_instructions(const std::string& dir, int pid) {
  // The newest dump: DIR/callgrind.out.<pid>.<n>, "summary: <Ir>" or "totals: <Ir>".
  std::string newest;
  int best = -1;
  const std::string prefix = "callgrind.out." + std::to_string(pid) + ".";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const int n = std::atoi(name.c_str() + prefix.size());
    if (n > best) best = n, newest = e.path().string();
  }
  if (newest.empty()) return -1;
  std::ifstream in(newest);
  long long total = -1;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("summary: ", 0) == 0 || line.rfind("totals: ", 0) == 0) total = std::stoll(line.substr(line.find(' ') + 1));
  return total;
}

struct LoadResult {
  double seconds = 0;
  std::vector<double> ms;
  int failures = 0;
};

LoadResult closed_loop(int port, const std::vector<std::string>& requests, int total, int connections) {
  asio::io_context io;
  LoadResult out;
  int sent = 0;
  std::vector<std::shared_ptr<LoadConn>> conns;
  for (int c = 0; c < connections; ++c) {
    auto conn = std::make_shared<LoadConn>(io);
    conn->sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    conn->sock.set_option(tcp::no_delay(true));
    conn->request = requests[c % requests.size()];
    conn->take = [&] { return sent < total ? (++sent, true) : false; };
    conn->done = [&](double ms, bool ok) {
      out.ms.push_back(ms);
      if (!ok) ++out.failures;
    };
    conns.push_back(conn);
  }
  const auto t0 = Clock::now();
  for (auto& c : conns) c->send();
  io.run();
  out.seconds = ms_between(t0, Clock::now()) / 1000.0;
  return out;
}

}  // namespace

TEST_CASE("bench: intake alone at 64 keep-alive connections, and idle connections", "[.bench]") {
  const int total = env_int("SB_BENCH_MESSAGES", 50000);
  const int tenant_count = env_int("SB_BENCH_TENANTS", 50);
  const int connections = env_int("SB_BENCH_CONNECTIONS", 64);
  const int idle = env_int("SB_BENCH_IDLE_CONNECTIONS", 10000);

  sbtest::TestStack stack("bench-intake", 12);
  std::vector<sbtest::TenantInfo> tenants;
  for (int i = 0; i < tenant_count; ++i) tenants.push_back(stack.create_tenant("bench-" + std::to_string(i)));
  const int port = sbtest::free_port();
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(port);
  stack.config.log.level = "warn";
  stack.write_config();
  ::setenv("SWITCHBOARD_INTAKE_IDLE_TIMEOUT_MS", "300000", 1);  // idle connections outlive the measurement
  auto intake = stack.spawn("intake", {"intake"});
  httplib::Client api("127.0.0.1", port);
  // SB_BENCH_READY_TIMEOUT_MS: longer for an intake under valgrind (it reads its debug info first).
  REQUIRE(sbtest::eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; },
                             env_int("SB_BENCH_READY_TIMEOUT_MS", 30000)));

  std::vector<std::string> requests;
  for (std::size_t i = 0; i < tenants.size() * 3; ++i) {
    const std::string body = json{{"to", "+15550001234"}, {"text", "benchmark message " + std::to_string(i)},
                                  {"priority", sb::kLanes[i % 3]}}.dump();
    requests.push_back("POST /v1/sessions/main/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                       tenants[i % tenants.size()].api_key + "\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  // Warm-up: auth cache, PostgreSQL pool, Kafka connections and metadata. A fresh broker may
  // still be loading its coordinator (a loaded box: acks past publish_timeout_ms, 503s), so
  // warm-up rounds repeat until one has no failure.
  int warm_failures = 0;
  for (int round = 0; round < 5; ++round) {
    auto warm = closed_loop(port, requests, std::max(2000, total / 10), connections);
    warm_failures = warm.failures;
    if (warm.failures == 0) break;
    std::printf("warm-up round %d: %d of its requests failed; again\n", round + 1, warm.failures);
  }
  REQUIRE(warm_failures == 0);
  const char* cg_dir = std::getenv("SB_BENCH_CALLGRIND_DIR");
  const bool under_callgrind = cg_dir && *cg_dir;
  if (under_callgrind) REQUIRE(callgrind("-z", intake.pid()));
  const double cpu0 = cpu_seconds(intake.pid()), gen0 = own_cpu_seconds();
  const long long broker0 = server_ticks("SB_BENCH_KAFKA_PID_FILE", false), pg0 = server_ticks("SB_BENCH_PG_PID_FILE", true);
  auto load = closed_loop(port, requests, total, connections);
  const double cpu_load = cpu_seconds(intake.pid()) - cpu0, gen_load = own_cpu_seconds() - gen0;
  const long long broker1 = server_ticks("SB_BENCH_KAFKA_PID_FILE", false), pg1 = server_ticks("SB_BENCH_PG_PID_FILE", true);
  std::printf("intake only (%d keep-alive connections, 202 after PostgreSQL commit + Kafka ack): %d requests in %.2f s = "
              "%.0f req/s, p50 %.2f ms, p99 %.2f ms, %d failed; intake CPU %.1f µs/request\n",
              connections, total, load.seconds, total / load.seconds, percentile(load.ms, 0.5), percentile(load.ms, 0.99),
              load.failures, cpu_load * 1e6 / total);
  std::printf("  CPU µs/request: intake %.1f, Kafka broker %s, PostgreSQL %s, load generator %.1f\n", cpu_load * 1e6 / total,
              broker0 < 0 ? "n/a" : std::to_string(static_cast<int>(sbbench::ticks_to_us(broker1 - broker0) / total)).c_str(),
              pg0 < 0 ? "n/a" : std::to_string(static_cast<int>(sbbench::ticks_to_us(pg1 - pg0) / total)).c_str(),
              gen_load * 1e6 / total);
  if (under_callgrind) {
    REQUIRE(callgrind("--dump=load", intake.pid()));
    const long long ir = callgrind_dumped_instructions(cg_dir, intake.pid());
    std::printf("  callgrind: intake %lld instructions in the load window = %.0f instructions/request\n", ir,
                static_cast<double>(ir) / total);
  }
  CHECK(load.failures == 0);
  // Where a request's time goes, from intake's own counters (whole run, warm-up included).
  auto metric = [&](const std::string& text, const std::string& name) {
    const auto at = text.find("\n" + name + " ");
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + name.size() + 2));
  };
  if (auto m = api.Get("/metrics")) {
    const double batches = metric(m->body, "sb_intake_insert_batches_total"), rows = metric(m->body, "sb_intake_insert_rows_total");
    const double acks = metric(m->body, "sb_intake_kafka_acks_total");
    std::printf("  group commit: %.0f batches, %.1f rows each, %.2f ms per batch; Kafka: %.2f ms produce→ack on average\n",
                batches, rows / std::max(1.0, batches), metric(m->body, "sb_intake_insert_seconds_total") * 1e3 / std::max(1.0, batches),
                metric(m->body, "sb_intake_kafka_ack_seconds_total") * 1e3 / std::max(1.0, acks));
  }

  // Idle keep-alive connections: each made one request, then stays open.
  const double quiet0 = cpu_seconds(intake.pid());
  std::this_thread::sleep_for(std::chrono::seconds(10));  // the measurement window itself, not a wait for an event
  const double quiet = cpu_seconds(intake.pid()) - quiet0;
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> open;
  const std::string health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::array<char, 4096> buf{};
  for (int i = 0; i < idle; ++i) {
    auto s = std::make_unique<tcp::socket>(io);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    asio::write(*s, asio::buffer(health));
    std::size_t got = 0;
    std::string answer;
    while (answer.find("\r\n\r\n") == std::string::npos || answer.size() < answer.find("\r\n\r\n") + 4 + 15) {
      got = s->read_some(asio::buffer(buf));
      answer.append(buf.data(), got);
    }
    REQUIRE(answer.compare(9, 3, "200") == 0);
    open.push_back(std::move(s));
  }
  const double idle0 = cpu_seconds(intake.pid());
  std::this_thread::sleep_for(std::chrono::seconds(10));  // the measurement window
  const double idle_cpu = cpu_seconds(intake.pid()) - idle0;
  std::printf("intake CPU over 10 s: %.3f s with no connections, %.3f s with %d idle keep-alive connections open\n", quiet,
              idle_cpu, idle);
  // The connections are still served after idling.
  asio::write(*open.back(), asio::buffer(health));
  CHECK(open.back()->read_some(asio::buffer(buf)) > 0);
  open.clear();
  intake.signal(SIGTERM);
  CHECK(intake.wait(std::max(20000, env_int("SB_BENCH_READY_TIMEOUT_MS", 30000))) == 0);
}
