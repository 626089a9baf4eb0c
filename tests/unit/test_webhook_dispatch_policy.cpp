// The dispatcher's policy without Kafka or PostgreSQL: what follows an attempt (decide), and
// the engine's per-endpoint isolation (concurrency cap, waiting line, circuit breaker) against a
// loopback receiver.
#include <catch2/catch.hpp>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "switchboard/core/http_server.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"
#include "switchboard/workers/webhooks/delivery_engine.hpp"

using namespace std::chrono_literals;
using sb::Decision;
using sb::DeliveryAttempt;

namespace {

sb::Delivery delivery(const std::string& url, int attempt = 1, const std::string& endpoint_id = "e1") {
  sb::WebhookEndpoint e;
  e.id = endpoint_id;
  e.tenant_id = "t1";
  e.url = url;
  e.secret = sb::new_webhook_secret();
  return sb::Delivery{e, sb::new_uuid_v7(), "message.sent", std::string("main"),
                      std::make_shared<const std::string>("{\"id\":\"x\"}"), attempt, 0};
}

DeliveryAttempt failed(long status, std::optional<std::chrono::seconds> retry_after = std::nullopt) {
  DeliveryAttempt a;
  a.http_status = status;
  a.error = "HTTP " + std::to_string(status);
  a.retry_after = retry_after;
  return a;
}

}  // namespace

TEST_CASE("decide: delivered, retried on schedule, Retry-After, 410, dead letter, parked", "[unit][webhooks]") {
  auto schedule = sb::RetrySchedule::parse("5s,5m", 0.0);
  std::mt19937_64 rng(1);

  DeliveryAttempt ok;
  ok.verdict = DeliveryAttempt::Verdict::Delivered;
  ok.http_status = 204;
  auto d = sb::decide(delivery("http://x/"), ok, schedule, 30, rng);
  CHECK(d.action == Decision::Action::Delivered);
  CHECK(d.endpoint_succeeded);
  REQUIRE(d.log);
  CHECK(d.log->outcome == "succeeded");
  CHECK(d.log->http_status == 204);

  d = sb::decide(delivery("http://x/", 1), failed(500), schedule, 30, rng);
  CHECK(d.action == Decision::Action::Retry);
  CHECK(d.due_in_s == 5);
  CHECK(d.failed_attempts == 1);
  CHECK(d.endpoint_failed);
  CHECK(d.log->outcome == "failed");

  d = sb::decide(delivery("http://x/", 2), failed(500), schedule, 30, rng);
  CHECK(d.action == Decision::Action::Retry);
  CHECK(d.due_in_s == 300);

  d = sb::decide(delivery("http://x/", 1), failed(429, 120s), schedule, 30, rng);
  CHECK(d.due_in_s == 120);  // the receiver's Retry-After, within the schedule's longest step

  d = sb::decide(delivery("http://x/", 3), failed(500), schedule, 30, rng);
  CHECK(d.action == Decision::Action::DeadLetter);
  CHECK(d.failed_attempts == 3);
  CHECK(d.log->outcome == "dead_lettered");
  CHECK(d.reason.find("3 attempts") != std::string::npos);

  DeliveryAttempt gone = failed(410);
  gone.verdict = DeliveryAttempt::Verdict::Gone;
  d = sb::decide(delivery("http://x/"), gone, schedule, 30, rng);
  CHECK(d.action == Decision::Action::Gone);
  CHECK(d.log->http_status == 410);

  d = sb::decide(delivery("http://x/", 2), std::nullopt, schedule, 30, rng);  // breaker open: not attempted
  CHECK(d.action == Decision::Action::Park);
  CHECK(d.due_in_s == 30);
  CHECK(d.failed_attempts == 1);  // only real attempts count
  CHECK_FALSE(d.log);
  CHECK_FALSE(d.endpoint_failed);

  d = sb::dead_letter_unattempted(delivery("http://x/", 4), "endpoint disabled");
  CHECK(d.action == Decision::Action::DeadLetter);
  CHECK(d.log->outcome == "dead_lettered");
  CHECK(d.log->error == "endpoint disabled");
}

namespace {

// Holds /slow requests until released; /fail answers 500; anything else 200. Counts concurrency.
struct PolicyReceiver {
  sb::HttpServer server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  int in_flight = 0, max_in_flight = 0, fail_count = 0, ok_count = 0, slow_count = 0;

  PolicyReceiver() {
    server.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server.Post("/slow", [this](const httplib::Request&, httplib::Response& res) {
      std::unique_lock lock(mu);
      ++slow_count;
      max_in_flight = std::max(max_in_flight, ++in_flight);
      cv.notify_all();
      cv.wait_for(lock, 10s, [&] { return released; });
      --in_flight;
      res.status = 200;
    });
    server.Post("/fail", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lock(mu);
      ++fail_count;
      res.status = 500;
    });
    server.Post("/ok", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lock(mu);
      ++ok_count;
      res.status = 200;
    });
    port = server.bind_listen("127.0.0.1:0", "test");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~PolicyReceiver() {
    release();
    server.stop();
    thread.join();
  }
  void release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
};

// Collects engine results: attempted or parked, per delivery.
struct Results {
  std::mutex mu;
  std::condition_variable cv;
  int attempted = 0, parked = 0, delivered = 0;
  sb::DeliveryEngine::Done sink() {
    return [this](sb::Delivery, std::optional<DeliveryAttempt> a) {
      std::lock_guard lock(mu);
      if (!a) ++parked;
      else {
        ++attempted;
        if (a->verdict == DeliveryAttempt::Verdict::Delivered) ++delivered;
      }
      cv.notify_all();
    };
  }
  bool wait_total(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return attempted + parked >= n; });
  }
};

}  // namespace

TEST_CASE("delivery engine: a slow endpoint gets at most its cap, a bounded line, and never delays another",
          "[unit][webhooks][concurrency]") {
  PolicyReceiver rx;
  sb::WebhooksConfig config;
  config.max_in_flight_per_endpoint = 2;
  config.max_queued_per_endpoint = 2;
  config.timeout_ms = 10000;
  sb::AddressGuard guard({"127.0.0.0/8"});
  Results results;
  {
    sb::DeliveryEngine engine(config, guard);
    for (int i = 0; i < 5; ++i) engine.submit(delivery(rx.url("/slow"), 1, "slow"), results.sink());
    {
      std::unique_lock lock(rx.mu);
      REQUIRE(rx.cv.wait_for(lock, 10s, [&] { return rx.in_flight == 2; }));
    }
    // 2 in flight, 2 waiting in line, the fifth parked at once (line full).
    {
      std::lock_guard lock(results.mu);
      CHECK(results.parked == 1);
      CHECK(results.attempted == 0);
    }
    // Another endpoint on the same server is not held up by the slow one.
    // (4: its own cap of 2 plus a line of 2, so none is parked.)
    for (int i = 0; i < 4; ++i) engine.submit(delivery(rx.url("/ok"), 1, "fast"), results.sink());
    REQUIRE(results.wait_total(5));
    {
      std::lock_guard lock(results.mu);
      CHECK(results.delivered == 4);
      CHECK(results.parked == 1);
    }
    rx.release();
    REQUIRE(results.wait_total(9));
    std::lock_guard lock(results.mu);
    CHECK(results.delivered == 8);  // 4 fast + 4 slow (one was parked)
  }
  std::lock_guard lock(rx.mu);
  CHECK(rx.max_in_flight == 2);
  CHECK(rx.slow_count == 4);
}

TEST_CASE("delivery engine: an endpoint failing most attempts trips its breaker, others keep flowing",
          "[unit][webhooks][concurrency]") {
  PolicyReceiver rx;
  sb::WebhooksConfig config;
  config.breaker_window = 4;
  config.breaker_min_attempts = 4;
  config.breaker_failure_ratio = 0.75;
  config.breaker_cool_down_s = 60;
  sb::AddressGuard guard({"127.0.0.0/8"});
  Results results;
  sb::DeliveryEngine engine(config, guard);
  for (int i = 1; i <= 4; ++i) {
    engine.submit(delivery(rx.url("/fail"), 1, "bad"), results.sink());
    REQUIRE(results.wait_total(i));
  }
  engine.submit(delivery(rx.url("/fail"), 1, "bad"), results.sink());  // open: parked, not sent
  REQUIRE(results.wait_total(5));
  engine.submit(delivery(rx.url("/ok"), 1, "good"), results.sink());
  REQUIRE(results.wait_total(6));
  std::lock_guard lock(results.mu);
  CHECK(results.parked == 1);
  CHECK(results.delivered == 1);
  std::lock_guard rlock(rx.mu);
  CHECK(rx.fail_count == 4);
  CHECK(rx.ok_count == 1);
}

TEST_CASE("delivery engine: the process-wide cap is never exceeded and endpoints take turns",
          "[unit][webhooks][concurrency]") {
  PolicyReceiver rx;
  sb::WebhooksConfig config;
  config.max_in_flight = 3;
  config.max_in_flight_per_endpoint = 2;
  config.max_queued_per_endpoint = 10;
  sb::AddressGuard guard({"127.0.0.0/8"});
  Results results;
  sb::DeliveryEngine engine(config, guard);
  for (int i = 0; i < 4; ++i) engine.submit(delivery(rx.url("/slow"), 1, "a"), results.sink());
  for (int i = 0; i < 4; ++i) engine.submit(delivery(rx.url("/slow"), 1, "b"), results.sink());
  {
    std::unique_lock lock(rx.mu);
    REQUIRE(rx.cv.wait_for(lock, 10s, [&] { return rx.in_flight == 3; }));
  }
  CHECK(engine.park_delay_s("a") == 1);  // a full line is parked briefly, not for a breaker cool-down
  rx.release();
  REQUIRE(results.wait_total(8));
  std::lock_guard lock(results.mu);
  CHECK(results.delivered == 8);
  CHECK(results.parked == 0);
  std::lock_guard rlock(rx.mu);
  CHECK(rx.max_in_flight == 3);
}

TEST_CASE("delivery engine: live deliveries waiting in a slow endpoint's line past the bound are parked (C10)",
          "[unit][webhooks][concurrency]") {
  // Injected time: "long" waits without waiting. The endpoint is slow but succeeds: without the
  // bound its line would hold its events' offsets for max_queued x timeout / cap.
  PolicyReceiver rx;
  sb::WebhooksConfig config;
  config.max_in_flight_per_endpoint = 1;
  config.max_queued_per_endpoint = 100;
  config.timeout_ms = 10000;
  sb::AddressGuard guard({"127.0.0.0/8"});
  std::mutex clock_mu;
  auto fake_now = sb::DeliveryEngine::Clock::now();
  auto now = [&] {
    std::lock_guard lock(clock_mu);
    return fake_now;
  };
  auto advance = [&](std::chrono::milliseconds d) {
    std::lock_guard lock(clock_mu);
    fake_now += d;
  };
  Results results;
  {
    sb::DeliveryEngine engine(config, guard, 5000ms, now);
    for (int i = 0; i < 4; ++i) engine.submit(delivery(rx.url("/slow"), 1, "slow"), results.sink());
    auto scheduled = delivery(rx.url("/slow"), 2, "slow");
    scheduled.scheduled_id = 42;  // claimed from the schedule: holds a lease, not an offset
    engine.submit(std::move(scheduled), results.sink());
    {
      std::unique_lock lock(rx.mu);
      REQUIRE(rx.cv.wait_for(lock, 10s, [&] { return rx.in_flight == 1; }));
    }
    CHECK(engine.outstanding() == 5);
    advance(4999ms);  // not yet over the bound: a new arrival parks nothing
    engine.submit(delivery(rx.url("/slow"), 1, "slow"), results.sink());
    {
      std::lock_guard lock(results.mu);
      CHECK(results.parked == 0);
    }
    advance(1ms);  // the first four have now waited 5 s (one of them is in flight)
    engine.submit(delivery(rx.url("/slow"), 1, "slow"), results.sink());
    REQUIRE(results.wait_total(3));
    {
      std::lock_guard lock(results.mu);
      CHECK(results.parked == 3);  // the three live ones waiting; not the scheduled one, not the new ones
      CHECK(results.attempted == 0);
    }
    CHECK(engine.outstanding() == 4);  // in flight + scheduled + the two younger ones
    rx.release();
    REQUIRE(results.wait_total(7));
    std::lock_guard lock(results.mu);
    CHECK(results.delivered == 4);
    CHECK(results.parked == 3);
  }
  std::lock_guard lock(rx.mu);
  CHECK(rx.max_in_flight == 1);
  CHECK(rx.slow_count == 4);
}
