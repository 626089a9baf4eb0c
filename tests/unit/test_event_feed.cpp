// EventFeed (intake's sb.events reader and fan-out) against librdkafka's mock cluster, with its
// streams on a real sb::http::Server and raw-socket SSE clients: the live reader thread, the
// replay thread, the IO threads writing and clients closing all run at once. Not tagged
// [concurrency]: under TSan (gcc 12) librdkafka's own broker threads crash inside TSan's
// allocator (getaddrinfo → realloc, before any of our code runs), as the older mock-cluster
// tests (test_kafka_publisher) do; the plain and ASan runs take them. Redis is unreachable
// here: the connection limit falls back to this process (StreamLeases' degraded mode). The
// integration tests cover the real broker.
#include <catch2/catch.hpp>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <boost/asio.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../support/mock_kafka.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/producers/event_feed.hpp"

namespace {
using namespace std::chrono_literals;
namespace feed_asio = boost::asio;
using feed_tcp = feed_asio::ip::tcp;

// A port nothing listens on: Redis "down" for StreamLeases (connection refused at once).
int feed_closed_port() {
  feed_asio::io_context io;
  feed_tcp::acceptor a(io, feed_tcp::endpoint(feed_asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();  // closed again when `a` goes
}

struct FeedFixture {
  sbtest::MockCluster cluster{"sb.events", 4};
  sb::Config config;
  std::unique_ptr<sb::EventFeed> feed;
  sb::http::Server server;
  int port = 0;

  explicit FeedFixture(int max_per_tenant = 100) {
    config.kafka.brokers = cluster.bootstraps();
    config.redis.url = "redis://127.0.0.1:" + std::to_string(feed_closed_port());
    config.redis.timeout_ms = 200;
    config.stream.max_connections_per_tenant = max_per_tenant;
    config.stream.heartbeat_ms = 100;  // heartbeats race the events too
    feed = std::make_unique<sb::EventFeed>(config);
    // GET /s?tenant=T[&after=C]: admitted and attached like intake's /v1/events/stream.
    server.async_route("GET", "/s", [this](const sb::http::Request&, sb::http::Responder respond) {
      server.offload([this, respond] {
        const auto& req = respond.request();
        sb::Subscription sub;
        sub.tenant = req.get_param_value("tenant");
        if (req.has_param("after")) sub.after = sb::EventCursor::parse(req.get_param_value("after"));
        auto admitted = feed->admit(std::move(sub));
        if (auto* no = std::get_if<sb::StreamRefusal>(&admitted)) {
          sb::http::Response res;
          res.status = no->status;
          res.body = no->error;
          return respond(std::move(res));
        }
        if (auto stream = respond.open_event_stream()) feed->attach(std::move(std::get<sb::EventFeed::Admission>(admitted)), stream);
      });
    });
    port = server.bind_listen("127.0.0.1:0", "test");
    server.start();
    REQUIRE(wait_for([&] { return feed->ready(); }, 20s));
  }
  ~FeedFixture() {
    server.stop();  // streams end first (their on_closed reaches the feed)
    feed.reset();
  }

  template <typename F>
  static bool wait_for(F f, std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (f()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return f();
  }
};

// One SSE client on a blocking socket: what it read so far, and how many events of which seq.
struct FeedClient {
  feed_asio::io_context io;
  feed_tcp::socket sock{io};
  std::string got;

  FeedClient(int port, const std::string& query) {
    sock.connect(feed_tcp::endpoint(feed_asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    timeval tv{0, 50 * 1000};  // a read returns after 50 ms at most: the caller's deadline rules
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string req = "GET /s?" + query + " HTTP/1.1\r\nHost: t\r\n\r\n";
    feed_asio::write(sock, feed_asio::buffer(req));
  }
  // Reads until `n` events whose data has "seq" arrived, or the deadline; their seqs in order.
  std::vector<int> seqs(std::size_t n, std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    for (;;) {
      auto s = parse();
      if (s.size() >= n || std::chrono::steady_clock::now() >= end) return s;
      if (!read_some()) return parse();
    }
  }
  // One recv (not asio's: its blocking read ignores SO_RCVTIMEO); false once the server closed.
  bool read_some() {
    std::array<char, 8192> buf{};
    const auto k = ::recv(sock.native_handle(), buf.data(), buf.size(), 0);
    if (k > 0) got.append(buf.data(), static_cast<std::size_t>(k));
    return k > 0 || (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }
  std::vector<int> parse() const {
    std::vector<int> out;
    static const std::string marker = "\"seq\":";
    for (auto at = got.find(marker); at != std::string::npos; at = got.find(marker, at + 1)) {
      const auto end = got.find_first_not_of("0123456789", at + marker.size());
      if (end == std::string::npos) break;
      out.push_back(std::stoi(got.substr(at + marker.size(), end - at - marker.size())));
    }
    return out;
  }
  bool saw(const std::string& text) const { return got.find(text) != std::string::npos; }
  bool read_until(const std::string& text, std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (!saw(text) && std::chrono::steady_clock::now() < end) {
      if (!read_some()) break;
    }
    return saw(text);
  }
};

std::string feed_event(const std::string& tenant, int seq) {
  return nlohmann::json{{"id", "e-" + tenant + "-" + std::to_string(seq)}, {"type", "message.sent"}, {"tenant", tenant},
                        {"session", "main"}, {"data", {{"seq", seq}}}}.dump();
}

}  // namespace

TEST_CASE("event feed: concurrent streams of several tenants get exactly their events, in order, while others come and go",
          "[unit][stream]") {
  FeedFixture fx;
  sb::kafka::Producer producer(fx.config.kafka, {{"linger.ms", "0"}});
  const std::vector<std::string> tenants = {"t-a", "t-b", "t-c"};
  constexpr int kEvents = 60;
  std::vector<std::unique_ptr<FeedClient>> clients;  // two per tenant, read to the end
  for (const auto& t : tenants)
    for (int i = 0; i < 2; ++i) clients.push_back(std::make_unique<FeedClient>(fx.port, "tenant=" + t));
  REQUIRE(FeedFixture::wait_for([&] { return fx.feed->stats().open_streams == clients.size(); }, 10s));
  // Clients that open and leave while events flow: attach, close and forget race the fan-out.
  std::atomic<bool> publishing{true};
  std::thread churn([&] {
    for (int i = 0; publishing; ++i) {
      FeedClient passer(fx.port, "tenant=" + tenants[static_cast<std::size_t>(i) % tenants.size()]);
      passer.seqs(1, 50ms);
    }  // closed by the client
  });
  for (int seq = 0; seq < kEvents; ++seq)
    for (const auto& t : tenants) REQUIRE(producer.produce(fx.config.topic("sb.events"), t, feed_event(t, seq)).get().ok());
  publishing = false;
  churn.join();
  std::vector<int> want(kEvents);
  for (int i = 0; i < kEvents; ++i) want[static_cast<std::size_t>(i)] = i;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    CHECK(clients[i]->seqs(kEvents, 10s) == want);
    // Only its own tenant's events: every id it got names its tenant.
    const auto& mine = tenants[i / 2];
    for (const auto& t : tenants)
      if (t != mine) CHECK_FALSE(clients[i]->saw("\"tenant\":\"" + t + "\""));
  }
  REQUIRE(FeedFixture::wait_for([&] { return fx.feed->stats().open_streams == clients.size(); }, 10s));
}

TEST_CASE("event feed: resuming from a cursor replays the rest while new events arrive, then hands over to live",
          "[unit][stream]") {
  FeedFixture fx;
  sb::kafka::Producer producer(fx.config.kafka, {{"linger.ms", "0"}});
  const std::string t = "t-resume";
  std::string first_cursor;
  for (int seq = 0; seq < 30; ++seq) {
    auto r = producer.produce(fx.config.topic("sb.events"), t, feed_event(t, seq)).get();
    REQUIRE(r.ok());
    if (seq == 0) first_cursor = std::to_string(r.partition) + "-" + std::to_string(r.offset);
  }
  // Resumes after event 0 while events 30.. are produced: 1..59 exactly once, in order.
  FeedClient resumed(fx.port, "tenant=" + t + "&after=" + first_cursor);
  std::thread more([&] {
    for (int seq = 30; seq < 60; ++seq) producer.produce(fx.config.topic("sb.events"), t, feed_event(t, seq)).get();
  });
  auto got = resumed.seqs(59, 15s);
  more.join();
  got = resumed.seqs(59, 2s);
  std::vector<int> want;
  for (int i = 1; i < 60; ++i) want.push_back(i);
  CHECK(got == want);
}

TEST_CASE("event feed: without Redis the per-tenant limit holds in this process", "[unit][stream]") {
  FeedFixture fx(2);
  FeedClient one(fx.port, "tenant=t-limit"), two(fx.port, "tenant=t-limit");
  REQUIRE(FeedFixture::wait_for([&] { return fx.feed->stats().open_streams == 2; }, 10s));
  FeedClient three(fx.port, "tenant=t-limit");
  CHECK(three.read_until("HTTP/1.1 429", 5s));
  CHECK(fx.feed->stats().lease_fallbacks >= 1);
}
