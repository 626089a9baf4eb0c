// HttpProvider against an in-process Simulator on 127.0.0.1:<any port>: the worker's real HTTP
// path (libcurl client, cpp-httplib server, dedup by Idempotency-Key), no other servers needed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_client.hpp"
#include "switchboard/workers/http_provider.hpp"
#include "switchboard/workers/simulator.hpp"
#include "../support/simulator_thread.hpp"
#include "../support/closed_port.hpp"

using sbtest::closed_port;

namespace {

using json = nlohmann::json;
using Status = sb::SendResult::Status;
using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t0) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

sb::SimulatorConfig fast_sim(double failure_rate = 0.0, int latency_ms = 0) {
  sb::SimulatorConfig c;
  c.listen = "127.0.0.1:0";
  c.latency_ms = latency_ms;
  c.latency_jitter_ms = 0;
  c.failure_rate = failure_rate;
  return c;
}

// The simulator on its own thread, with what these tests read back from it.
class RunningSimulator : public sbtest::SimulatorThread {
 public:
  using SimulatorThread::SimulatorThread;
  // Generous default timeout: sanitizer builds and parallel ctest runs can be very slow.
  sb::ProviderConfig provider_config(int timeout_ms = 10000) const {
    sb::ProviderConfig c;
    c.url = url();
    c.timeout_ms = timeout_ms;
    return c;
  }
  json get(const std::string& path) const {
    sb::HttpClient client(10000);
    const auto r = client.get(url() + path);
    REQUIRE(r.transport_ok());
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  json stats() const { return get("/v1/stats"); }
  std::vector<std::string> arrivals(const std::string& tenant, const std::string& session) const {
    return get("/v1/log?tenant=" + tenant + "&session=" + session)["message_ids"].get<std::vector<std::string>>();
  }
};

sb::SendRequest message(const std::string& id, const std::string& session = "default",
                        const std::string& tenant = "0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f") {
  sb::SendRequest r;
  r.tenant_id = tenant;
  r.session = session;
  r.message_id = id;
  r.to = "+4915112345678";
  r.text = "hello " + id;
  return r;
}


}  // namespace

TEST_CASE("HttpProvider sends through the simulator and gets a provider id", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpProvider provider(sim.provider_config());
  CHECK(provider.name() == "http");

  const auto r = provider.send(message("m-1"));
  INFO(r.error);
  REQUIRE(r.status == Status::Sent);
  CHECK(r.provider_message_id.rfind("sim_", 0) == 0);
  CHECK(r.error.empty());

  const auto s = sim.stats();
  CHECK(s["accepted"] == 1);
  CHECK(s["duplicates"] == 0);
  CHECK(s["failures"] == 0);
}

TEST_CASE("the same message id twice is deduplicated by the simulator", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpProvider provider(sim.provider_config());

  const auto first = provider.send(message("dup-1"));
  const auto again = provider.send(message("dup-1"));
  REQUIRE(first.status == Status::Sent);
  REQUIRE(again.status == Status::Sent);
  CHECK(again.provider_message_id == first.provider_message_id);

  const auto s = sim.stats();
  CHECK(s["accepted"] == 1);
  CHECK(s["duplicates"] == 1);
  CHECK(sim.arrivals("0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f", "default") == std::vector<std::string>{"dup-1"});

  // The raw API says so too.
  sb::HttpClient client(10000);
  const auto raw = client.post_json(sim.url() + "/v1/messages",
                                    R"({"tenant":"0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f","session":"default","to":"x","text":"y"})",
                                    {{"Idempotency-Key", "dup-1"}});
  REQUIRE(raw.status == 200);
  const auto j = json::parse(raw.body);
  CHECK(j["duplicate"] == true);
  CHECK(j["provider_message_id"] == first.provider_message_id);
}

TEST_CASE("arrival log keeps first arrivals per session, in order", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpProvider provider(sim.provider_config());
  for (const auto& [id, session] : std::vector<std::pair<std::string, std::string>>{
           {"a-1", "alpha"}, {"b-1", "beta"}, {"a-2", "alpha"}, {"a-1", "alpha"}, {"a-3", "alpha"}, {"b-2", "beta"}})
    REQUIRE(provider.send(message(id, session)).status == Status::Sent);

  const std::string t = "0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f";
  CHECK(sim.arrivals(t, "alpha") == std::vector<std::string>{"a-1", "a-2", "a-3"});
  CHECK(sim.arrivals(t, "beta") == std::vector<std::string>{"b-1", "b-2"});
  CHECK(sim.arrivals(t, "gamma").empty());
  CHECK(sim.arrivals("other-tenant", "alpha").empty());
  CHECK(sim.stats()["duplicates"] == 1);
}

TEST_CASE("a simulated failure is retryable and records nothing", "[unit][provider]") {
  RunningSimulator sim(fast_sim(/*failure_rate=*/1.0));
  sb::HttpProvider provider(sim.provider_config());

  const auto r = provider.send(message("fail-1"));
  CHECK(r.status == Status::RetryableError);
  CHECK(r.provider_message_id.empty());
  CHECK_THAT(r.error, Catch::Contains("HTTP 503") && Catch::Contains("simulated failure") &&
                          Catch::Contains(sim.url() + "/v1/messages"));

  const auto s = sim.stats();
  CHECK(s["failures"] == 1);
  CHECK(s["accepted"] == 0);
  CHECK(sim.arrivals("0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f", "default").empty());
}

TEST_CASE("a provider that is not listening is a quick retryable error", "[unit][provider]") {
  sb::ProviderConfig config;
  config.url = "http://127.0.0.1:" + std::to_string(closed_port());
  config.timeout_ms = 2000;
  sb::HttpProvider provider(config);

  const auto t0 = Clock::now();
  const auto r = provider.send(message("down-1"));
  CHECK(ms_since(t0) < 1000);
  CHECK(r.status == Status::RetryableError);
  CHECK_THAT(r.error, Catch::StartsWith("provider " + config.url + "/v1/messages: "));
}

TEST_CASE("a provider slower than the timeout is a retryable timeout", "[unit][provider]") {
  RunningSimulator sim(fast_sim(0.0, /*latency_ms=*/500));
  sb::HttpProvider provider(sim.provider_config(/*timeout_ms=*/100));

  const auto t0 = Clock::now();
  const auto r = provider.send(message("slow-1"));
  CHECK(ms_since(t0) < 450);  // gave up well before the response
  CHECK(r.status == Status::RetryableError);
  CHECK(r.error == "provider " + sim.url() + "/v1/messages: timeout after 100 ms");
}

TEST_CASE("a 4xx from the provider is a rejection with the body excerpt", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpProvider provider(sim.provider_config());

  const auto r = provider.send(message("bad-1", "default", /*tenant=*/""));
  CHECK(r.status == Status::Rejected);
  CHECK_THAT(r.error, Catch::Contains("HTTP 400") && Catch::Contains("must not be empty"));

  // No idempotency key: refused locally, never sent.
  const auto no_key = provider.send(message(""));
  CHECK(no_key.status == Status::Rejected);
  CHECK_THAT(no_key.error, Catch::Contains("Idempotency-Key"));

  // Invalid UTF-8 cannot be encoded: rejected, not retried.
  auto bad_text = message("bad-utf8");
  bad_text.text = "caf\xe9";
  CHECK(provider.send(bad_text).status == Status::Rejected);

  CHECK(sim.stats()["accepted"] == 0);
}

TEST_CASE("simulator API: validation, health, lower-cased response headers", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpClient client(10000);

  const auto missing_key = client.post_json(sim.url() + "/v1/messages",
                                            R"({"tenant":"t","session":"s","to":"x","text":"y"})");
  CHECK(missing_key.status == 400);
  CHECK_THAT(missing_key.body, Catch::Contains("Idempotency-Key"));

  const auto not_json = client.post_json(sim.url() + "/v1/messages", "{nope", {{"Idempotency-Key", "k"}});
  CHECK(not_json.status == 400);

  const auto health = client.get(sim.url() + "/health");
  CHECK(health.status == 200);
  CHECK(health.transport_ok());
  CHECK(health.elapsed_ms > 0);
  bool content_type = false;
  for (const auto& [name, value] : health.headers)
    if (name == "content-type") content_type = value == "application/json";
  CHECK(content_type);

  CHECK(client.get(sim.url() + "/v1/log?tenant=t").status == 400);
  CHECK(client.get(sim.url() + "/nope").status == 404);
  CHECK(sim.stats()["accepted"] == 0);
}

TEST_CASE("HttpProvider is safe from many threads at once", "[unit][provider]") {
  RunningSimulator sim(fast_sim());
  sb::HttpProvider provider(sim.provider_config());
  constexpr int kThreads = 16, kPerThread = 10;
  std::atomic<int> sent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i)
        if (provider.send(message("c-" + std::to_string(t) + "-" + std::to_string(i), "s" + std::to_string(t)))
                .status == Status::Sent)
          ++sent;
    });
  for (auto& th : threads) th.join();
  CHECK(sent == kThreads * kPerThread);
  CHECK(sim.stats()["accepted"] == kThreads * kPerThread);
  CHECK(sim.arrivals("0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f", "s3").size() == kPerThread);
}

TEST_CASE("simulator stops promptly while clients hold keep-alive connections", "[unit][provider]") {
  auto sim = std::make_unique<RunningSimulator>(fast_sim());
  sb::HttpProvider provider(sim->provider_config());
  REQUIRE(provider.send(message("ka-1")).status == Status::Sent);  // this thread's client keeps its connection
  sb::HttpClient idle(10000);
  REQUIRE(idle.get(sim->url() + "/health").status == 200);

  const auto t0 = Clock::now();
  sim->stop();
  // ~10 ms normally; without the half-close httplib waits out the 5 s keep-alive timeout.
  CHECK(ms_since(t0) < 4000);
}

TEST_CASE("simulator refuses an address it cannot bind", "[unit][provider]") {
  RunningSimulator first(fast_sim());
  sb::SimulatorConfig taken = fast_sim();
  taken.listen = "127.0.0.1:" + std::to_string(first.port());
  sb::Simulator second(taken);
  CHECK_THROWS_WITH(second.run(), Catch::Contains("simulator.listen"));

  sb::SimulatorConfig bad = fast_sim();
  bad.listen = "no-port";
  sb::Simulator third(bad);
  CHECK_THROWS_WITH(third.run(), Catch::Contains("simulator.listen"));
}

TEST_CASE("HttpClient reuses its connection, does not follow redirects, lower-cases headers", "[unit][http]") {
  httplib::Server server;
  server.set_tcp_nodelay(true);
  server.Get("/port", [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Remote-Port", std::to_string(req.remote_port));
    res.set_content("ok", "text/plain");
  });
  server.Get("/moved", [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/port"); });
  const int port = server.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread thread([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  auto header = [](const sb::HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers)
      if (k == name) return v;
    return std::string();
  };
  {
    sb::HttpClient client(10000);
    const auto a = client.get(base + "/port");
    const auto b = client.request("GET", base + "/port");
    REQUIRE(a.status == 200);
    REQUIRE(b.status == 200);
    CHECK(a.body == "ok");
    CHECK(!header(a, "x-remote-port").empty());
    CHECK(header(a, "x-remote-port") == header(b, "x-remote-port"));  // same TCP connection

    const auto moved = client.get(base + "/moved");
    CHECK(moved.status == 302);
    CHECK(header(moved, "location") == "/port");
  }  // closes the connection, so stop() below is immediate
  server.stop();
  thread.join();
}

TEST_CASE("HttpProvider maps HTTP statuses and bodies", "[unit][provider]") {
  httplib::Server server;
  // One request per connection: a plain httplib server's stop() would otherwise wait out the
  // keep-alive timeout for this thread's pooled provider connection (the Simulator doesn't).
  server.set_keep_alive_max_count(1);
  server.set_tcp_nodelay(true);
  const std::string long_body = std::string(199, 'x') + "\xc3\xa9" + std::string(50, 'y');  // é straddles byte 200
  server.Post(R"(/(\d+)/v1/messages)", [&](const httplib::Request& req, httplib::Response& res) {
    res.status = std::stoi(req.matches[1]);
    res.set_content(res.status == 418 ? long_body : "busy\r\nline two", "text/plain");
  });
  server.Post("/garbage/v1/messages", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hello</html>", "text/html");
  });
  server.Post("/noid/v1/messages", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(R"({"ok":true,"key":")" + req.get_header_value("Idempotency-Key") + "\"}", "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread thread([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  auto send = [&](const std::string& path) {
    sb::ProviderConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(port) + "/" + path + "/";  // trailing slash is fine
    c.timeout_ms = 10000;
    return sb::HttpProvider(c).send(message("map-1"));
  };
  for (const char* code : {"408", "425", "429", "500", "502", "503", "504"}) {
    INFO(code);
    const auto r = send(code);
    CHECK(r.status == Status::RetryableError);
    CHECK_THAT(r.error, Catch::EndsWith(std::string("/") + code + "/v1/messages: HTTP " + code + ": busy  line two"));
  }
  for (const char* code : {"400", "401", "403", "404", "409", "422", "301"}) {
    INFO(code);
    CHECK(send(code).status == Status::Rejected);
  }
  const auto teapot = send("418");
  CHECK(teapot.status == Status::Rejected);
  CHECK_THAT(teapot.error, Catch::EndsWith(": HTTP 418: " + std::string(199, 'x') + "..."));

  const auto garbage = send("garbage");
  CHECK(garbage.status == Status::Rejected);
  CHECK_THAT(garbage.error, Catch::Contains("HTTP 200 but the response is not JSON: <html>hello</html>"));
  const auto noid = send("noid");
  CHECK(noid.status == Status::Rejected);
  CHECK_THAT(noid.error, Catch::Contains("no provider_message_id") && Catch::Contains(R"("key":"map-1")"));

  server.stop();
  thread.join();
}
