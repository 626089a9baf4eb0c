// Delivery building blocks: retry schedule, circuit breaker, and one signed attempt against a
// local receiver (loopback, allowed explicitly: the guard refuses it by default).
#include <catch2/catch.hpp>
#include <atomic>
#include <future>
#include <thread>

#include "switchboard/core/http_server.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/workers/webhooks/circuit_breaker.hpp"
#include "switchboard/workers/webhooks/retry_schedule.hpp"
#include "switchboard/workers/webhooks/delivery_engine.hpp"
#include "switchboard/workers/webhooks/webhook_request.hpp"

using namespace std::chrono_literals;
using sb::CircuitBreaker;
using sb::DeliveryAttempt;
using sb::RetrySchedule;

TEST_CASE("retry schedule: default steps with jitter, exhaustion, Retry-After clamped", "[unit][webhooks]") {
  auto s = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h", 0.2);
  CHECK(s.max_attempts() == 8);
  std::mt19937_64 rng(7);
  const std::vector<long long> base = {5, 300, 1800, 7200, 18000, 36000, 36000};
  for (int i = 1; i <= 7; ++i)
    for (int k = 0; k < 50; ++k) {
      auto d = s.next_delay(i, std::nullopt, rng);
      REQUIRE(d);
      CHECK(d->count() >= static_cast<long long>(base[i - 1] * 0.8) - 1);
      CHECK(d->count() <= static_cast<long long>(base[i - 1] * 1.2) + 1);
    }
  CHECK_FALSE(s.next_delay(8, std::nullopt, rng));  // the 8th failure is the last: dead-letter
  CHECK(s.next_delay(1, 120s, rng) == 120s);         // receiver knows best…
  CHECK(s.next_delay(1, 0s, rng) == 1s);             // …within reason
  CHECK(s.next_delay(1, 999999s, rng) == 36000s);
  CHECK_THROWS_AS(RetrySchedule::parse("5s,soon", 0.2), sb::ConfigError);
  CHECK_THROWS_AS(RetrySchedule::parse("", 0.2), sb::ConfigError);
  CHECK_THROWS_AS(RetrySchedule::parse("5s", 1.5), sb::ConfigError);
}

TEST_CASE("circuit breaker: opens on mostly-failing, probes once, backs off", "[unit][webhooks]") {
  CircuitBreaker::Settings st;
  st.window = 10;
  st.min_attempts = 5;
  st.failure_ratio = 0.8;
  st.cool_down = 30s;
  st.max_cool_down = 100s;
  CircuitBreaker b(st);
  auto t = CircuitBreaker::Clock::now();
  for (int i = 0; i < 4; ++i) b.record(false, t);
  CHECK(b.allow(t));  // too few attempts to judge
  b.record(false, t);
  CHECK(b.state(t) == CircuitBreaker::State::Open);
  CHECK_FALSE(b.allow(t + 29s));
  CHECK(b.allow(t + 30s));         // one probe…
  CHECK_FALSE(b.allow(t + 30s));   // …at a time
  b.record(false, t + 31s);        // probe failed: open twice as long
  CHECK_FALSE(b.allow(t + 31s + 59s));
  CHECK(b.allow(t + 31s + 60s));
  b.record(true, t + 92s);         // probe succeeded: closed, history forgotten
  CHECK(b.state(t + 92s) == CircuitBreaker::State::Closed);
  CHECK(b.allow(t + 92s));
  // A mostly-healthy endpoint stays closed.
  CircuitBreaker h(st);
  for (int i = 0; i < 50; ++i) h.record(i % 3 != 0, t);
  CHECK(h.state(t) == CircuitBreaker::State::Closed);
}

namespace {
struct DeliveryReceiver {
  sb::HttpServer server;
  std::thread thread;
  int port = 0;
  std::atomic<int> hits{0};
  httplib::Headers last_headers;
  std::string last_body;
  std::mutex mu;
  DeliveryReceiver() {
    server.Post("/ok", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      ++hits;
      last_headers = req.headers;
      last_body = req.body;
      res.set_content("thanks", "text/plain");
    });
    server.Post("/gone", [this](const auto&, auto& res) { ++hits; res.status = 410; });
    server.Post("/busy", [this](const auto&, auto& res) { ++hits; res.status = 503; res.set_header("Retry-After", "42"); });
    server.Post("/moved", [this](const auto&, auto& res) { ++hits; res.status = 302; res.set_header("Location", "http://127.0.0.1:1/x"); });
    server.Post("/slow", [this](const auto&, auto& res) { ++hits; std::this_thread::sleep_for(1500ms); res.status = 200; });
    port = server.bind_listen("127.0.0.1:0", "test");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(5ms);
  }
  ~DeliveryReceiver() {
    server.stop();
    thread.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
};

// One signed attempt through the dispatcher's engine, waited for.
struct Sender {
  sb::WebhooksConfig config;
  sb::DeliveryEngine engine;
  Sender(const sb::AddressGuard& guard, int timeout_ms) : config(with_timeout(timeout_ms)), engine(config, guard) {}
  static sb::WebhooksConfig with_timeout(int timeout_ms) {
    sb::WebhooksConfig c;
    c.timeout_ms = timeout_ms;
    return c;
  }
  DeliveryAttempt send(const sb::WebhookEndpoint& ep, const std::string& event_id, const std::string& body) {
    std::promise<std::optional<DeliveryAttempt>> result;
    auto done = result.get_future();
    engine.submit(sb::Delivery{ep, event_id, "message.sent", std::nullopt, std::make_shared<const std::string>(body), 1, 0},
                  [&result](sb::Delivery, std::optional<DeliveryAttempt> a) { result.set_value(std::move(a)); });
    REQUIRE(done.wait_for(10s) == std::future_status::ready);
    auto attempt = done.get();
    REQUIRE(attempt);  // attempted, not parked
    return *attempt;
  }
};
}  // namespace

TEST_CASE("webhook attempt: signed, classified, SSRF-refused, signed twice during a rotation", "[unit][webhooks]") {
  DeliveryReceiver rx;
  sb::AddressGuard loopback_ok({"127.0.0.0/8"});
  Sender sender(loopback_ok, 1000);
  sb::WebhookEndpoint ep;
  ep.url = rx.url("/ok");
  ep.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const auto now = std::chrono::system_clock::now();
  const std::string body = R"({"id":"evt","type":"message.sent"})";

  auto ok = sender.send(ep, "evt_1", body);
  CHECK(ok.verdict == DeliveryAttempt::Verdict::Delivered);
  CHECK(ok.http_status == 200);
  CHECK(ok.response_excerpt == "thanks");
  {
    std::lock_guard lock(rx.mu);
    CHECK(rx.last_body == body);
    const auto id = rx.last_headers.find("webhook-id")->second;
    const auto ts = rx.last_headers.find("webhook-timestamp")->second;
    const auto sig = rx.last_headers.find("webhook-signature")->second;
    CHECK(id == "evt_1");
    const auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    CHECK(sb::verify_webhook({sb::parse_webhook_secret(ep.secret)}, id, ts, sig, body, unix_now));
    CHECK(sig.find(' ') == std::string::npos);  // one secret, one signature
  }

  // During a rotation window both secrets sign; after it only the current one.
  ep.previous_secret = sb::new_webhook_secret();
  ep.previous_secret_expires_at = sb::to_rfc3339(now + 1h);
  sender.send(ep, "evt_2", body);
  {
    std::lock_guard lock(rx.mu);
    const auto sig = rx.last_headers.find("webhook-signature")->second;
    CHECK(sig.find(' ') != std::string::npos);
    const auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    CHECK(sb::verify_webhook({sb::parse_webhook_secret(*ep.previous_secret)}, "evt_2",
                             rx.last_headers.find("webhook-timestamp")->second, sig, body, unix_now));
  }
  ep.previous_secret_expires_at = sb::to_rfc3339(now - 1s);
  sender.send(ep, "evt_3", body);
  {
    std::lock_guard lock(rx.mu);
    CHECK(rx.last_headers.find("webhook-signature")->second.find(' ') == std::string::npos);
  }

  ep.url = rx.url("/gone");
  CHECK(sender.send(ep, "e", body).verdict == DeliveryAttempt::Verdict::Gone);
  ep.url = rx.url("/busy");
  auto busy = sender.send(ep, "e", body);
  CHECK(busy.verdict == DeliveryAttempt::Verdict::Retry);
  CHECK(busy.retry_after == 42s);
  ep.url = rx.url("/moved");
  auto moved = sender.send(ep, "e", body);
  CHECK(moved.verdict == DeliveryAttempt::Verdict::Retry);
  CHECK_THAT(moved.error, Catch::Contains("redirects are not followed"));
  ep.url = rx.url("/slow");
  auto slow = sender.send(ep, "e", body);
  CHECK(slow.verdict == DeliveryAttempt::Verdict::Retry);
  CHECK(slow.http_status == 0);

  // Without the allow-list, loopback is refused at connect time: the receiver sees nothing.
  sb::AddressGuard strict;
  Sender guarded(strict, 1000);
  const int before = rx.hits;
  ep.url = rx.url("/ok");
  auto refused = guarded.send(ep, "e", body);
  CHECK(refused.verdict == DeliveryAttempt::Verdict::Retry);
  CHECK_THAT(refused.error, Catch::Contains("loopback"));
  CHECK(rx.hits == before);
}
