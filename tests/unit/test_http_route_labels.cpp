// sb::http::Server tells the handlers and the logger which route a request took, as the route's
// template (a bounded metrics label, unlike the path), and when its header arrived; and a
// header an async handler adds before answering reaches whatever answer follows. On loopback.
#include <catch2/catch.hpp>
#include <httplib.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/http_server.hpp"

namespace {

struct RouteLogLine {
  std::string method, route, path;
  double seconds = -1;
  int status = 0;
};

}  // namespace

TEST_CASE("http server: requests carry their route template and receive time, and the logger sees both",
          "[http][metrics]") {
  sb::http::Server server;
  std::mutex mu;
  std::vector<RouteLogLine> logged;
  server.Get(R"(/v1/sessions/([^/]+)/qr)", [](const sb::http::Request& req, sb::http::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a handler that takes a while
    res.set_content(req.route, "text/plain");
  });
  server.async_route("POST", R"(/v1/sessions/([^/]+)/messages)", [&server](const sb::http::Request&, sb::http::Responder respond) {
    respond.add_header("RateLimit", "\"requests\";r=4;t=1");
    // Answered later, from another thread, by code that knows nothing of the header.
    server.after(std::chrono::milliseconds(1), [respond] {
      sb::http::Response res;
      res.status = 202;
      respond(std::move(res));
    });
  });
  server.Get(R"(/v1/providers/cloud_api/webhook)", [](const sb::http::Request&, sb::http::Response&) {});
  server.set_logger([&](const sb::http::Request& req, const sb::http::Response& res) {
    std::lock_guard lock(mu);
    logged.push_back({req.method, req.route, req.path,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - req.received).count(), res.status});
  });
  const int port = server.bind_listen("127.0.0.1:0", "test");
  server.start();

  const std::vector<std::pair<std::string, std::string>> expected = {
      {"GET", "/v1/sessions/{}/qr"}, {"POST", "/v1/sessions/{}/messages"}, {"GET", "/v1/providers/cloud_api/webhook"}};
  CHECK(server.route_templates() == expected);

  httplib::Client c("127.0.0.1", port);
  auto qr = c.Get("/v1/sessions/acme-7f3a/qr");
  REQUIRE(qr);
  CHECK(qr->body == "/v1/sessions/{}/qr");  // the handler sees it too
  auto sent = c.Post("/v1/sessions/acme-7f3a/messages", "{}", "application/json");
  REQUIRE(sent);
  CHECK(sent->status == 202);
  CHECK(sent->get_header_value("RateLimit") == "\"requests\";r=4;t=1");
  auto missing = c.Get("/v1/sessions/acme-7f3a/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  server.stop();

  std::lock_guard lock(mu);
  REQUIRE(logged.size() == 3);
  CHECK(logged[0].route == "/v1/sessions/{}/qr");
  CHECK(logged[0].path == "/v1/sessions/acme-7f3a/qr");
  CHECK(logged[0].seconds >= 0.03);  // timed from the header's arrival, the handler's wait included
  CHECK(logged[0].seconds < 10);     // and from this request's header, not a zero time point
  CHECK(logged[1].route == "/v1/sessions/{}/messages");
  CHECK(logged[1].method == "POST");
  CHECK(logged[2].route.empty());  // no route took it
  CHECK(logged[2].status == 404);
  CHECK(logged[2].seconds >= 0);
  CHECK(logged[2].seconds < 10);
}

TEST_CASE("http server: a handler that drops its responder unanswered gets the client a 500 and a log line naming the route",
          "[http]") {
  auto captured = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  spdlog::default_logger()->sinks().push_back(captured);
  sb::http::Server server;
  server.async_route("POST", R"(/v1/sessions/([^/]+)/messages)",
                     [](const sb::http::Request&, sb::http::Responder) { /* a defect: never answers */ });
  const int port = server.bind_listen("127.0.0.1:0", "test");
  server.start();
  httplib::Client c("127.0.0.1", port);
  auto r = c.Post("/v1/sessions/acme-7f3a/messages", "{}", "application/json");
  server.stop();
  spdlog::default_logger()->sinks().pop_back();
  REQUIRE(r);  // answered, not left hanging
  CHECK(r->status == 500);
  int lines = 0;
  for (const auto& line : captured->last_formatted())
    if (line.find("http.unanswered") != std::string::npos) {
      ++lines;
      CHECK(line.find("/v1/sessions/{}/messages") != std::string::npos);  // the template, not the tenant's path
      CHECK(line.find("acme-7f3a") == std::string::npos);
    }
  CHECK(lines == 1);
}
