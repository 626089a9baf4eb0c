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

namespace {

std::string fixed(double v, int decimals) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(decimals);
  s << v;
  return s.str();
}

// The loopback receiver: a small epoll HTTP/1.1 server on one thread. POST /e/<n> is answered
// 200 at once; POST /h/<n> is held for hang_ms (past the dispatcher's timeout) first. Each
// request's arrival time, endpoint and webhook-id are kept.
//
// Not cpp-httplib: its server polls every idle keep-alive connection every ~10 ms from its own
// thread, which with the ~1,000 connections the dispatcher opens to 1,000 endpoints burns most
// of a core (measured: 0.83 CPU-s/s for 1,000 idle connections) — the receiver would be what
// is measured, on a 2-core machine.
class Receiver {
 public:
  struct Arrival {
    int endpoint;
    bool hanging;
    Clock::time_point at;
    std::string id;
  };

  explicit Receiver(int hang_ms = 0) : hang_ms_(hang_ms) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    int yes = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, SOMAXCONN) == 0);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(epoll_fd_ >= 0);
    REQUIRE(wake_fd_ >= 0);
    watch(listen_fd_, EPOLLIN, EPOLL_CTL_ADD);
    watch(wake_fd_, EPOLLIN, EPOLL_CTL_ADD);
    thread_ = std::thread([this] { loop(); });
  }
  ~Receiver() {
    stopping_ = true;
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
    for (auto& [fd, c] : conns_) ::close(fd);
    ::close(listen_fd_);
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }
  int port() const { return port_; }
  std::string url(bool hang, int endpoint) const {
    return "http://127.0.0.1:" + std::to_string(port_) + (hang ? "/h/" : "/e/") + std::to_string(endpoint);
  }
  // Distinct (event, endpoint) pairs answered 200 at once; repeats of a pair are duplicates.
  std::size_t healthy() const { return healthy_.load(); }
  std::size_t duplicates() const { return duplicates_.load(); }
  std::size_t hanging() const { return hanging_.load(); }
  std::vector<Arrival> arrivals() {
    std::lock_guard lock(mu_);
    return arrivals_;
  }

 private:
  struct Conn {
    uint64_t serial = 0;
    std::string in, out;
    bool held = false;           // a hanging request is being held: read nothing more
    bool continue_sent = false;  // "Expect: 100-continue" answered for the request being read
    bool close_after = false;
  };
  using Timer = std::pair<int, uint64_t>;  // fd, serial

  void watch(int fd, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, op, fd, &ev);
  }

  void loop() {
    std::vector<epoll_event> events(1024);
    while (!stopping_) {
      int wait_ms = -1;
      if (!timers_.empty())
        wait_ms = std::max<int>(0, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(
                                                        timers_.begin()->first - Clock::now()).count()));
      const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), wait_ms);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_fd_) continue;
        if (fd == listen_fd_) {
          accept_all();
          continue;
        }
        auto it = conns_.find(fd);
        if (it == conns_.end()) continue;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
          drop(fd);
          continue;
        }
        if ((events[i].events & EPOLLOUT) && !flush(fd, it->second)) continue;
        if (events[i].events & EPOLLIN) on_readable(fd, it->second);
      }
      const auto now = Clock::now();
      while (!timers_.empty() && timers_.begin()->first <= now) {
        const auto [fd, serial] = timers_.begin()->second;
        timers_.erase(timers_.begin());
        auto it = conns_.find(fd);
        if (it == conns_.end() || it->second.serial != serial || !it->second.held) continue;  // the client gave up
        it->second.held = false;
        it->second.out += kOk;
        if (flush(fd, it->second)) process(fd, it->second);
      }
    }
  }

  void accept_all() {
    for (;;) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int yes = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      conns_[fd].serial = ++serials_;
      watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
  }

  void drop(int fd) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns_.erase(fd);
  }

  void on_readable(int fd, Conn& c) {
    char buf[16384];
    for (;;) {
      const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.in.append(buf, static_cast<std::size_t>(r));
        if (static_cast<std::size_t>(r) < sizeof buf) break;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return drop(fd);  // closed by the client (e.g. after its timeout) or an error
    }
    process(fd, c);
  }

  // Answers every complete request in c.in (stops behind a held one). False if fd was dropped.
  bool process(int fd, Conn& c) {
    while (!c.held) {
      const auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      const std::string_view head(c.in.data(), end);
      const auto line_end = std::min(head.find("\r\n"), head.size());
      const auto request_line = head.substr(0, line_end);
      const auto sp1 = request_line.find(' ');
      const auto sp2 = request_line.find(' ', sp1 + 1);
      const std::string_view path =
          sp1 == std::string_view::npos ? std::string_view() : request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::size_t content_length = 0;
      bool expect_continue = false;
      std::string id;
      for (std::size_t pos = line_end + 2; pos < head.size();) {
        auto e = head.find("\r\n", pos);
        if (e == std::string_view::npos) e = head.size();
        const auto h = head.substr(pos, e - pos);
        pos = e + 2;
        const auto colon = h.find(':');
        if (colon == std::string_view::npos) continue;
        std::string name(h.substr(0, colon));
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
        auto value = h.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (name == "content-length") content_length = std::stoul(std::string(value));
        else if (name == "webhook-id") id = value;
        else if (name == "expect") expect_continue = value == "100-continue";
        else if (name == "connection") c.close_after = value == "close";
      }
      const std::size_t total = end + 4 + content_length;
      if (c.in.size() < total) {
        if (expect_continue && !c.continue_sent) {
          c.continue_sent = true;
          c.out += "HTTP/1.1 100 Continue\r\n\r\n";
          if (!flush(fd, c)) return false;
        }
        break;
      }
      c.continue_sent = false;
      const bool hang = path.rfind("/h/", 0) == 0;
      int endpoint = -1;
      if (hang || path.rfind("/e/", 0) == 0) endpoint = std::atoi(std::string(path.substr(3)).c_str());
      c.in.erase(0, total);
      if (endpoint < 0) {
        c.out += "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        continue;
      }
      const auto now = Clock::now();
      {
        std::lock_guard lock(mu_);
        if (!hang && !seen_.insert(id + "#" + std::to_string(endpoint)).second) ++duplicates_;
        else if (!hang) ++healthy_;
        arrivals_.push_back({endpoint, hang, now, std::move(id)});
      }
      if (hang) {
        ++hanging_;
        c.held = true;
        timers_.emplace(now + std::chrono::milliseconds(hang_ms_), Timer{fd, c.serial});
        break;
      }
      c.out += kOk;
    }
    if (!flush(fd, c)) return false;
    if (c.close_after && c.out.empty() && !c.held) {
      drop(fd);
      return false;
    }
    return true;
  }

  // Writes what it can; watches for writability while something is left. False if dropped.
  bool flush(int fd, Conn& c) {
    while (!c.out.empty()) {
      const ssize_t w = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w > 0) {
        c.out.erase(0, static_cast<std::size_t>(w));
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        return true;
      }
      drop(fd);
      return false;
    }
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    return true;
  }

  static constexpr std::string_view kOk =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";

  int hang_ms_;
  int listen_fd_ = -1, epoll_fd_ = -1, wake_fd_ = -1, port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  // Loop thread only:
  std::unordered_map<int, Conn> conns_;
  uint64_t serials_ = 0;
  std::multimap<Clock::time_point, Timer> timers_;
  // Shared with the benchmark thread:
  std::mutex mu_;
  std::vector<Arrival> arrivals_;
  std::unordered_set<std::string> seen_;
  std::atomic<std::size_t> healthy_{0}, duplicates_{0}, hanging_{0};
};

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
