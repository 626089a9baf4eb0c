// The real-time event stream of one intake process (`switchboard intake`, a child process):
// how many SSE connections it holds, what they cost, how fast it fans events out and how long
// an event takes from publish to client.
//
//   connect  SB_BENCH_STREAM_CONNECTIONS (10000) SSE connections over SB_BENCH_STREAM_TENANTS
//            (10) tenants, all open (stream.open received); intake's RSS before and after.
//   warm-up  SB_BENCH_STREAM_WARMUP_S (3) s of the steady rate, not measured: a fresh broker's
//            first seconds (JIT, producer id) are not the stream's latency.
//   steady   SB_BENCH_STREAM_RATE (50) events/s round-robin over the tenants for
//            SB_BENCH_STREAM_SECONDS (10): each goes to every connection of its tenant.
//            Latency = the produce call (linger.ms 0) → the event's bytes read by the client,
//            on every SB_BENCH_STREAM_SAMPLE-th (10) connection; split into the producer and
//            broker's part (→ ack), Kafka's delivery (ack → a plain consumer in this process
//            with the live reader's settings) and the stream's (that consumer → the client).
//   burst    SB_BENCH_STREAM_BURST (1000) events produced at once: deliveries ÷ time until the
//            last one arrived = the fan-out rate at saturation.
// The clients are one Asio thread in this process (raw sockets, counting events by a marker,
// no SSE library: 10,000 Python clients would measure Python).
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string_view>
#include <thread>

#include "bench_util.hpp"
#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/producers/event_feed.hpp"

using nlohmann::json;
using sbbench::Clock;
using sbbench::env_int;
using sbbench::ms_between;
using sbbench::percentile;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

double rss_mib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Shared {
  std::vector<Clock::time_point> published;  // by seq, written before the produce call
  std::vector<Clock::time_point> acked;      // by seq, when the broker's ack reached the producer
  std::vector<Clock::time_point> consumed;   // by seq, when the plain consumer (KafkaProbe) polled it
  std::mutex mu;
  std::vector<std::pair<std::size_t, Clock::time_point>> reads;  // (seq, read by a sampled client)
  std::atomic<uint64_t> opened{0}, delivered{0}, failed{0};
  bool measuring = true;
};

// One SSE connection: sends the request, then counts `"seq":` markers in whatever it reads.
struct Conn : std::enable_shared_from_this<Conn> {
  tcp::socket sock;
  std::string request;
  Shared& shared;
  bool sample;
  std::array<char, 8192> buf{};  // × 10,000 connections: keep it small
  std::string tail;  // the last bytes of the previous read: a marker may straddle two reads
  bool open = false;

  Conn(asio::io_context& io, std::string req, Shared& s, bool sampled) : sock(io), request(std::move(req)), shared(s), sample(sampled) {}

  void start(const tcp::endpoint& ep) {
    sock.async_connect(ep, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return self->fail();
      asio::async_write(self->sock, asio::buffer(self->request), [self](boost::system::error_code e, std::size_t) {
        if (e) return self->fail();
        self->read();
      });
    });
  }
  void fail() { ++shared.failed; }
  void read() {
    sock.async_read_some(asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (ec) return self->fail();
      self->scan(n);
      self->read();
    });
  }
  void scan(std::size_t n) {
    const auto now = Clock::now();
    // Most reads end where a chunk ends: scan the buffer in place; only a read that stops
    // mid-event is carried over (a marker may straddle two reads).
    std::string joined;
    std::string_view text(buf.data(), n);
    if (!tail.empty()) {
      joined = tail;
      joined.append(buf.data(), n);
      text = joined;
    }
    if (!open && text.find("stream.open") != std::string_view::npos) {
      open = true;
      ++shared.opened;
    }
    static constexpr std::string_view marker = "\"seq\":";
    std::size_t consumed = 0;
    for (auto at = text.find(marker); at != std::string_view::npos; at = text.find(marker, at + 1)) {
      const auto digits = at + marker.size();
      const auto end = text.find_first_not_of("0123456789", digits);
      if (end == std::string_view::npos) break;  // the number continues in the next read
      ++shared.delivered;
      consumed = end;
      if (sample) {
        std::size_t seq = 0;
        for (auto i = digits; i < end; ++i) seq = seq * 10 + static_cast<std::size_t>(text[i] - '0');
        std::lock_guard lock(shared.mu);
        if (shared.measuring && seq < shared.published.size()) shared.reads.emplace_back(seq, now);
      }
    }
    const bool chunk_ended = text.size() >= 2 && text.substr(text.size() - 2) == "\r\n";
    if (chunk_ended) tail.clear();
    else tail = std::string(text.substr(std::max(consumed, text.size() > 32 ? text.size() - 32 : 0)));
  }
};

// A plain consumer of sb.events with the live reader's own settings, in this process: when an
// event is available to any Kafka consumer, so the client's latency splits into Kafka's share
// and the stream's (intake's fan-out and writes, the client's read).
class KafkaProbe {
 public:
  KafkaProbe(const sb::Config& config, const std::string& topic, Shared& shared) : shared_(shared) {
    auto conf = sb::kafka::make_conf(config.kafka, sb::event_reader_properties(config, "bench-probe", false));
    char errstr[512];
    rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr));
    REQUIRE(rk_);
    conf.release();
    const int n = sb::kafka::partition_count(rk_.get(), topic, 10000);
    sb::kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(n));
    for (int p = 0; p < n; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_END;
    REQUIRE(rd_kafka_assign(rk_.get(), list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
    thread_ = std::thread([this] { run(); });
  }
  ~KafkaProbe() {
    stop_ = true;
    thread_.join();
  }

 private:
  void run() {
    static constexpr std::string_view marker = "\"seq\":";
    while (!stop_) {
      sb::kafka::MessagePtr m(rd_kafka_consumer_poll(rk_.get(), 100));
      if (!m || m->err) continue;
      const auto now = Clock::now();
      const std::string_view v(static_cast<const char*>(m->payload), m->len);
      const auto at = v.find(marker);
      if (at == std::string_view::npos) continue;
      std::size_t seq = 0;
      for (auto i = at + marker.size(); i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i) seq = seq * 10 + static_cast<std::size_t>(v[i] - '0');
      std::lock_guard lock(shared_.mu);
      if (seq < shared_.consumed.size()) shared_.consumed[seq] = now;
    }
  }
  Shared& shared_;
  sb::kafka::HandlePtr rk_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last
};

}  // namespace

TEST_CASE("bench: event stream connections, fan-out and publish-to-client latency of one intake", "[.bench]") {
  const int connections = env_int("SB_BENCH_STREAM_CONNECTIONS", 10000);
  const int tenant_count = env_int("SB_BENCH_STREAM_TENANTS", 10);
  const int rate = env_int("SB_BENCH_STREAM_RATE", 50);
  const int seconds = env_int("SB_BENCH_STREAM_SECONDS", 10);
  const int burst = env_int("SB_BENCH_STREAM_BURST", 1000);
  const int sample_every = std::max(1, env_int("SB_BENCH_STREAM_SAMPLE", 10));
  const int warmup_s = env_int("SB_BENCH_STREAM_WARMUP_S", 3);

  sbtest::TestStack stack("bench-stream", 12);
  std::vector<sbtest::TenantInfo> tenants;
  for (int i = 0; i < tenant_count; ++i) tenants.push_back(stack.create_tenant("bench-" + std::to_string(i)));
  const int port = sbtest::free_port();
  stack.config.intake.listen = "127.0.0.1:" + std::to_string(port);
  stack.config.log.level = "warn";
  stack.config.stream.max_connections_per_tenant = connections;
  stack.write_config();
  auto intake = stack.spawn("intake", {"intake"});
  httplib::Client api("127.0.0.1", port);
  REQUIRE(sbtest::eventually([&] {
    auto r = api.Get("/metrics");
    return r && r->body.find("sb_intake_stream_ready 1") != std::string::npos;
  }, 30000));
  const double rss0 = rss_mib(intake.pid());

  Shared shared;
  const int warm = rate * warmup_s;
  const int total_events = warm + rate * seconds + burst;
  shared.published.resize(static_cast<std::size_t>(total_events));
  shared.acked.resize(static_cast<std::size_t>(total_events));
  shared.consumed.resize(static_cast<std::size_t>(total_events));
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread client([&] { io.run(); });
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
  std::vector<int> per_tenant(tenants.size());
  const auto t_connect = Clock::now();
  {
    std::vector<std::shared_ptr<Conn>> conns;
    for (int i = 0; i < connections; ++i) {
      const auto& t = tenants[static_cast<std::size_t>(i) % tenants.size()];
      ++per_tenant[static_cast<std::size_t>(i) % tenants.size()];
      auto c = std::make_shared<Conn>(io, "GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + t.api_key + "\r\n\r\n",
                                      shared, i % sample_every == 0);
      // In waves, so the listen backlog never overflows into SYN retries (1 s stalls).
      asio::post(io, [c, ep] { c->start(ep); });
      if (i % 500 == 499)
        REQUIRE(sbtest::eventually([&] { return shared.opened + shared.failed >= static_cast<uint64_t>(i + 1); }, 60000, 5));
    }
    REQUIRE(sbtest::eventually([&] { return shared.opened + shared.failed >= static_cast<uint64_t>(connections); }, 60000, 5));
  }
  const double connect_s = ms_between(t_connect, Clock::now()) / 1000;
  REQUIRE(shared.failed == 0);
  const double rss1 = rss_mib(intake.pid());
  std::printf("event stream: %d SSE connections over %d tenants open in %.1f s; intake RSS %.0f MiB → %.0f MiB "
              "(%.1f KiB per connection)\n",
              connections, tenant_count, connect_s, rss0, rss1, (rss1 - rss0) * 1024 / connections);

  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}, {"socket.nagle.disable", "true"}});
  const auto topic = stack.topic("sb.events");
  auto publish = [&](int seq) {
    const auto& t = tenants[static_cast<std::size_t>(seq) % tenants.size()];
    json event = {{"id", sb::new_uuid_v7()}, {"type", "message.sent"}, {"tenant", t.id}, {"session", "main"},
                  {"occurred_at", sb::now_rfc3339()},
                  {"data", {{"message_id", sb::new_uuid_v7()}, {"provider_message_id", "p"}, {"to", "+15550100"}, {"seq", seq}}}};
    const auto body = event.dump();
    {
      std::lock_guard lock(shared.mu);
      shared.published[static_cast<std::size_t>(seq)] = Clock::now();
    }
    producer.produce(topic, t.id, body, {}, [&, seq](const sb::kafka::DeliveryResult& r) {
      if (!r.ok()) ++shared.failed;  // checked at the end (no assertion off the test's thread)
      std::lock_guard lock(shared.mu);
      shared.acked[static_cast<std::size_t>(seq)] = Clock::now();
    });
  };
  auto expected_deliveries = [&](int from, int to) {
    uint64_t n = 0;
    for (int s = from; s < to; ++s) n += static_cast<uint64_t>(per_tenant[static_cast<std::size_t>(s) % tenants.size()]);
    return n;
  };

  KafkaProbe probe(stack.config, topic, shared);
  // Warm-up: the same rate, not measured.
  {
    const auto tw = Clock::now();
    for (int s = 0; s < warm; ++s) {
      std::this_thread::sleep_until(tw + std::chrono::microseconds(static_cast<int64_t>(1e6 * s / rate)));
      publish(s);
    }
    const uint64_t warm_want = expected_deliveries(0, warm);
    REQUIRE(sbtest::eventually([&] { return shared.delivered >= warm_want; }, 120000, 5));
    std::lock_guard lock(shared.mu);
    shared.reads.clear();
  }
  const uint64_t delivered_warm = shared.delivered;

  // Steady: events at a fixed rate.
  const int steady = rate * seconds;
  const double cpu0 = cpu_seconds(intake.pid());
  const auto t0 = Clock::now();
  for (int s = warm; s < warm + steady; ++s) {
    std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * (s - warm) / rate)));  // the schedule
    publish(s);
  }
  const uint64_t want = expected_deliveries(warm, warm + steady);
  REQUIRE(sbtest::eventually([&] { return shared.delivered - delivered_warm >= want; }, 120000, 5));
  const double steady_s = ms_between(t0, Clock::now()) / 1000;
  const double cpu_steady = cpu_seconds(intake.pid()) - cpu0;
  // Two clocks: from the produce call (includes the producer's and broker's part), and from the
  // broker's ack reaching the producer ("on sb.events": the stream's own part; a client that read
  // an event before the producer heard its ack counts 0).
  std::vector<double> lat, from_ack, to_ack, kafka_share, stream_share;
  {
    std::lock_guard lock(shared.mu);
    shared.measuring = false;
    for (const auto& [seq, at] : shared.reads) {
      if (seq < static_cast<std::size_t>(warm)) continue;
      lat.push_back(ms_between(shared.published[seq], at));
      from_ack.push_back(std::max(0.0, ms_between(shared.acked[seq], at)));
      to_ack.push_back(ms_between(shared.published[seq], shared.acked[seq]));
      if (shared.consumed[seq] == Clock::time_point{}) continue;
      kafka_share.push_back(std::max(0.0, ms_between(shared.acked[seq], shared.consumed[seq])));
      stream_share.push_back(std::max(0.0, ms_between(shared.consumed[seq], at)));
    }
  }
  std::printf("  steady: %d events/s for %d s → %llu deliveries (%.0f/s), publish→client p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms (%zu samples); intake CPU %.2f s (%.0f%% of a core)\n",
              rate, seconds, static_cast<unsigned long long>(want), want / steady_s, percentile(lat, 0.5), percentile(lat, 0.99),
              percentile(lat, 1.0), lat.size(), cpu_steady, 100 * cpu_steady / steady_s);
  std::printf("  steady: broker ack→client (from reaching sb.events) p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              percentile(from_ack, 0.5), percentile(from_ack, 0.99), percentile(from_ack, 1.0));
  std::printf("  steady, split: produce→ack p50 %.2f / p99 %.2f ms; ack→plain consumer (Kafka's delivery) p50 %.2f / p99 %.2f ms; "
              "plain consumer→client (intake's fan-out + the client's read) p50 %.2f / p99 %.2f / max %.2f ms\n",
              percentile(to_ack, 0.5), percentile(to_ack, 0.99), percentile(kafka_share, 0.5), percentile(kafka_share, 0.99),
              percentile(stream_share, 0.5), percentile(stream_share, 0.99), percentile(stream_share, 1.0));

  // Burst: as fast as the producer takes them.
  const uint64_t before = shared.delivered;
  const uint64_t want_burst = expected_deliveries(warm + steady, warm + steady + burst);
  const double cpu1 = cpu_seconds(intake.pid());
  const auto t1 = Clock::now();
  for (int s = warm + steady; s < warm + steady + burst; ++s) publish(s);
  REQUIRE(sbtest::eventually([&] { return shared.delivered - before >= want_burst; }, 120000, 2));
  const double burst_s = ms_between(t1, Clock::now()) / 1000;
  const double cpu_burst = cpu_seconds(intake.pid()) - cpu1;
  std::printf("  burst: %d events → %llu deliveries in %.2f s = %.0f deliveries/s (events × matching clients); "
              "intake CPU %.2f s, %.2f µs per delivery\n",
              burst, static_cast<unsigned long long>(want_burst), burst_s, want_burst / burst_s, cpu_burst,
              cpu_burst * 1e6 / static_cast<double>(want_burst));
  if (auto m = api.Get("/metrics")) {
    const auto at = m->body.find("\nsb_intake_stream_overflows_total ");
    std::printf("  slow-client disconnects during the run: %s\n",
                at == std::string::npos ? "?" : m->body.substr(at + 35, m->body.find('\n', at + 1) - at - 35).c_str());
  }
  CHECK(shared.failed == 0);
  guard.reset();
  io.stop();
  client.join();
  intake.signal(SIGTERM);
  CHECK(intake.wait(20000) == 0);
}
