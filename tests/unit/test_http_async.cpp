// AsyncHttpClient against in-process loopback servers: concurrency, timeouts next to fast
// requests, refusals, SSRF guard, shutdown with transfers in flight, body cap, keep-alive.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/core/http_server.hpp"
#include "../support/closed_port.hpp"

using sbtest::closed_port;

using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

constexpr auto kWait = 10s;  // generous: only reached when something is broken

// Loopback server with a thread pool large enough for the slow handlers to not starve the rest.
struct Server {
  sb::HttpServer server;
  std::thread thread;
  int port = 0;

  std::mutex mu;
  std::condition_variable cv;
  int hits = 0;
  int slow_started = 0;
  bool release_slow = false;      // teardown: slow handlers stop sleeping
  std::set<int> remote_ports;     // /echo callers' source ports: one per connection

  Server() {
    server.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server.Post("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu);
        ++hits;
        remote_ports.insert(req.remote_port);
      }
      res.set_header("X-Echo-Id", req.get_header_value("X-Id"));
      res.set_content(req.body, "text/plain");
    });
    server.Post("/slow", [this](const httplib::Request&, httplib::Response& res) {
      std::unique_lock lock(mu);
      ++hits;
      ++slow_started;
      cv.notify_all();
      cv.wait_for(lock, 3s, [this] { return release_slow; });
      res.set_content("late", "text/plain");
    });
    server.Get("/big", [this](const httplib::Request&, httplib::Response& res) {
      {
        std::lock_guard lock(mu);
        ++hits;
      }
      std::string body(200 * 1024, 'x');
      for (std::size_t i = 0; i < body.size(); i += 100) body[i] = static_cast<char>('a' + (i / 100) % 26);
      res.set_content(body, "text/plain");
    });
    port = server.bind_listen("127.0.0.1:0", "test");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(5ms);
  }
  ~Server() {
    {
      std::lock_guard lock(mu);
      release_slow = true;
    }
    cv.notify_all();
    server.stop();
    thread.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
  int hit_count() {
    std::lock_guard lock(mu);
    return hits;
  }
};

// Callback results by request id, and how often each id's callback ran.
struct Results {
  std::mutex mu;
  std::condition_variable cv;
  std::map<int, int> calls;
  std::map<int, sb::HttpResponse> responses;

  sb::AsyncHttpClient::Callback record(int id) {
    return [this, id](sb::HttpResponse r) {
      std::lock_guard lock(mu);
      ++calls[id];
      responses[id] = std::move(r);
      cv.notify_all();
    };
  }
  bool wait_for_count(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kWait, [&] { return calls.size() >= n; });
  }
  sb::HttpResponse get(int id) {
    std::lock_guard lock(mu);
    return responses.at(id);
  }
};

// in_flight() drops just after a callback returns; wait for it rather than race it.
bool drains(const sb::AsyncHttpClient& client) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (client.in_flight() != 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

std::optional<std::string> header(const sb::HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return std::nullopt;
}

sb::HttpRequest post(const std::string& url, std::string body, int id) {
  sb::HttpRequest rq;
  rq.url = url;
  rq.body = std::move(body);
  rq.headers = {{"X-Id", std::to_string(id)}, {"Content-Type", "text/plain"}};
  return rq;
}


}  // namespace

TEST_CASE("async http: 200 concurrent POSTs each complete once with their own echo", "[unit][http_async][concurrency]") {
  Server srv;
  sb::AsyncHttpClient::Options opt;
  opt.max_host_connections = 16;  // the rest wait for a free connection and reuse it
  Results res;  // before the client: its destructor may still run callbacks
  sb::AsyncHttpClient client(opt);
  constexpr int kN = 200;
  for (int i = 0; i < kN; ++i)
    client.submit(post(srv.url("/echo"), "payload-" + std::to_string(i), i), res.record(i));
  REQUIRE(res.wait_for_count(kN));
  CHECK(drains(client));

  std::lock_guard lock(res.mu);
  REQUIRE(res.calls.size() == kN);
  for (int i = 0; i < kN; ++i) {
    INFO("request " << i);
    CHECK(res.calls[i] == 1);
    const auto& r = res.responses[i];
    CHECK(r.transport_ok());
    CHECK(r.status == 200);
    CHECK(r.body == "payload-" + std::to_string(i));
    CHECK(header(r, "x-echo-id") == std::to_string(i));  // names lower-cased
    CHECK(header(r, "content-type") == "text/plain");
    CHECK(r.elapsed_ms > 0);
  }
}

TEST_CASE("async http: a slow endpoint times out without holding up fast requests", "[unit][http_async][concurrency]") {
  Server srv;
  std::mutex mu;
  std::condition_variable cv;
  int slow_done = 0, fast_done = 0;
  int fast_done_when_first_slow_finished = -1;
  int slow_done_when_last_fast_finished = -1;
  std::vector<sb::HttpResponse> slow_responses, fast_responses;
  constexpr int kSlow = 3, kFast = 20;
  sb::AsyncHttpClient client({});  // after the state its callbacks touch

  for (int i = 0; i < kSlow; ++i) {
    auto rq = post(srv.url("/slow"), "s", i);
    rq.timeout_ms = 300;
    client.submit(std::move(rq), [&](sb::HttpResponse r) {
      std::lock_guard lock(mu);
      if (slow_done++ == 0) fast_done_when_first_slow_finished = fast_done;
      slow_responses.push_back(std::move(r));
      cv.notify_all();
    });
  }
  {  // the slow requests are really occupying the server before the fast ones go out
    std::unique_lock lock(srv.mu);
    REQUIRE(srv.cv.wait_for(lock, kWait, [&] { return srv.slow_started == kSlow; }));
  }
  for (int i = 0; i < kFast; ++i)
    client.submit(post(srv.url("/echo"), "f" + std::to_string(i), i), [&](sb::HttpResponse r) {
      std::lock_guard lock(mu);
      if (++fast_done == kFast) slow_done_when_last_fast_finished = slow_done;
      fast_responses.push_back(std::move(r));
      cv.notify_all();
    });

  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, kWait, [&] { return slow_done == kSlow && fast_done == kFast; }));
  CHECK(slow_done_when_last_fast_finished == 0);  // every fast one finished while all slow ones were pending
  CHECK(fast_done_when_first_slow_finished == kFast);
  for (const auto& r : fast_responses) CHECK(r.status == 200);
  for (const auto& r : slow_responses) {
    CHECK(r.status == 0);
    CHECK(r.body.empty());
    CHECK_THAT(r.error, Contains("timeout"));
  }
}

TEST_CASE("async http: connection refused is a transport error", "[unit][http_async][concurrency]") {
  Results res;  // before the client: its destructor may still run callbacks
  sb::AsyncHttpClient client({});
  sb::HttpRequest rq;
  rq.method = "GET";
  rq.url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/";
  client.submit(rq, res.record(0));
  REQUIRE(res.wait_for_count(1));
  const auto r = res.get(0);
  CHECK(r.status == 0);
  CHECK_FALSE(r.transport_ok());
  CHECK_THAT(r.error, Contains("refused"));
}

TEST_CASE("async http: the address guard refuses loopback unless allowed", "[unit][http_async][concurrency][ssrf]") {
  Server srv;
  {
    const sb::AddressGuard strict;
    sb::AsyncHttpClient::Options opt;
    opt.guard = &strict;
    Results res;  // before the client: its destructor may still run callbacks
    sb::AsyncHttpClient client(opt);
    client.submit(post(srv.url("/echo"), "nope", 0), res.record(0));
    REQUIRE(res.wait_for_count(1));
    const auto r = res.get(0);
    CHECK(r.status == 0);
    CHECK_THAT(r.error, Contains("loopback"));
    CHECK_THAT(r.error, Contains("127.0.0.1"));
    CHECK(srv.hit_count() == 0);  // refused before connecting
  }
  {
    const sb::AddressGuard loopback_ok({"127.0.0.0/8"});
    sb::AsyncHttpClient::Options opt;
    opt.guard = &loopback_ok;
    Results res;  // before the client: its destructor may still run callbacks
    sb::AsyncHttpClient client(opt);
    for (int i = 0; i < 3; ++i) client.submit(post(srv.url("/echo"), "yes", i), res.record(i));
    REQUIRE(res.wait_for_count(3));
    for (int i = 0; i < 3; ++i) {
      const auto r = res.get(i);
      CHECK(r.error == "");
      CHECK(r.status == 200);
      CHECK(r.body == "yes");
    }
  }
}

TEST_CASE("async http: destroying the client fails running and queued transfers exactly once", "[unit][http_async][concurrency]") {
  Server srv;
  Results res;
  constexpr int kRunning = 8, kQueued = 5;
  {
    sb::AsyncHttpClient client({});
    for (int i = 0; i < kRunning; ++i) client.submit(post(srv.url("/slow"), "s", i), res.record(i));
    {
      std::unique_lock lock(srv.mu);
      REQUIRE(srv.cv.wait_for(lock, kWait, [&] { return srv.slow_started == kRunning; }));
    }
    for (int i = kRunning; i < kRunning + kQueued; ++i) client.submit(post(srv.url("/slow"), "s", i), res.record(i));
    CHECK(client.in_flight() == kRunning + kQueued);
  }  // destructor: callbacks run before it returns
  std::lock_guard lock(res.mu);
  REQUIRE(res.calls.size() == kRunning + kQueued);
  for (const auto& [id, n] : res.calls) {
    INFO("request " << id);
    CHECK(n == 1);
    CHECK(res.responses[id].status == 0);
    CHECK(res.responses[id].error == "client shut down");
  }
}

TEST_CASE("async http: response body is capped at max_body_bytes", "[unit][http_async][concurrency]") {
  Server srv;
  Results res;  // before the client: its destructor may still run callbacks
  sb::AsyncHttpClient client({});
  sb::HttpRequest rq;
  rq.method = "GET";
  rq.url = srv.url("/big");
  rq.max_body_bytes = 1000;
  client.submit(rq, res.record(0));
  rq.max_body_bytes = 1024 * 1024;
  client.submit(rq, res.record(1));
  REQUIRE(res.wait_for_count(2));
  const auto capped = res.get(0);
  const auto full = res.get(1);
  CHECK(capped.status == 200);  // the rest was read and dropped, not an error
  CHECK(capped.error == "");
  REQUIRE(full.body.size() == 200 * 1024);
  CHECK(capped.body.size() == 1000);
  CHECK(capped.body == full.body.substr(0, 1000));
}

TEST_CASE("async http: sequential requests reuse a kept-alive connection", "[unit][http_async][concurrency]") {
  Server srv;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  bool all_ok = true;
  constexpr int kN = 50;
  std::function<void(int)> send;
  sb::AsyncHttpClient client({});  // after the state its callbacks touch
  // Each request is submitted from the previous one's callback, on the loop thread.
  send = [&](int i) {
    client.submit(post(srv.url("/echo"), std::to_string(i), i), [&, i](sb::HttpResponse r) {
      {
        std::lock_guard lock(mu);
        all_ok = all_ok && r.status == 200 && r.body == std::to_string(i);
        ++done;
        cv.notify_all();
      }
      if (i + 1 < kN) send(i + 1);
    });
  };
  send(0);
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, kWait, [&] { return done == kN; }));
    CHECK(all_ok);
  }
  std::lock_guard lock(srv.mu);
  CHECK(srv.hits == kN);
  CHECK(srv.remote_ports.size() <= 2);
}

TEST_CASE("async http: a throwing callback is contained", "[unit][http_async][concurrency]") {
  Server srv;
  Results res;  // before the client: its destructor may still run callbacks
  sb::AsyncHttpClient client({});
  client.submit(post(srv.url("/echo"), "a", 0), [](sb::HttpResponse) { throw std::runtime_error("boom"); });
  client.submit(post(srv.url("/echo"), "b", 1), res.record(1));
  REQUIRE(res.wait_for_count(1));
  CHECK(res.get(1).body == "b");
  CHECK(drains(client));
}
