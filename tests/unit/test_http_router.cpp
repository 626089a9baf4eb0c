// sb::http::RouteTable finds the route std::regex_match would have found (registration order, whole
// path, groups as std::smatch has them), but the segment shapes our routes use run no regex; the
// server answers 404 for an unknown path and for a known path with another method, and labels
// requests with the route template. Every pattern is checked against std::regex itself.
#include <catch2/catch.hpp>
#include <httplib.h>

#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include "switchboard/core/http_server.hpp"
#include "switchboard/core/http_server_routes.hpp"

namespace {

using sb::http::RoutePattern;
using sb::http::RouteTable;

// What the regex router answered: the groups of a whole-path match, or nothing.
std::optional<std::vector<std::string>> regex_groups(const std::string& pattern, const std::string& path) {
  std::smatch m;
  const std::string p = path;
  if (!std::regex_match(p, m, std::regex(pattern))) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& g : m) out.push_back(g.str());
  return out;
}

std::optional<std::vector<std::string>> table_groups(const std::string& pattern, const std::string& path) {
  RoutePattern rp(pattern);
  std::vector<std::string> groups;
  if (!rp.match(path, RouteTable::split_path(path), groups)) return std::nullopt;
  return groups;
}

}  // namespace

TEST_CASE("http router: segment patterns match exactly what std::regex_match matched", "[http][router]") {
  const std::vector<std::string> patterns = {
      "/v1/sessions",           R"(/v1/sessions/([^/]+))",        R"(/v1/sessions/([^/]+)/messages)",
      R"(/v1/sessions/([^/]+)/qr)", "/health",                    "/health/ready",
      "/",                      R"(/api/sessions/([^/]+)/(start|stop|restart|logout))",
      R"(/v1/providers/engine/([^/]+)/webhook)", R"(/v1/files/report\.csv)",
      // Not segment shapes: kept as regexes, same answers.
      ".*",                     R"(/(v[0-9]+\.[0-9]+)/([^/]+)/messages)", R"(/v1/x/(a/b|c))",
      R"(/v1/items/(\d+))",     R"(/v1/(?:a|b)/c)",
  };
  const std::vector<std::string> paths = {
      "/v1/sessions", "/v1/sessions/", "/v1/sessions/main", "/v1/sessions/main/", "/v1/sessions//messages",
      "/v1/sessions/main/messages", "/v1/sessions/main/messages/x", "/v1/sessions/a b%/messages",
      "/v1/sessions/main/qr", "/health", "/health/", "/health/ready", "/healthz", "/", "", "v1/sessions",
      "/api/sessions/s1/start", "/api/sessions/s1/logout", "/api/sessions/s1/starts", "/api/sessions/s1/",
      "/v1/providers/engine/node-1/webhook", "/v1/files/report.csv", "/v1/files/reportxcsv",
      "/v21.0/123/messages", "/v21x0/123/messages", "/v1/x/a/b", "/v1/x/c", "/v1/items/42", "/v1/items/x",
      "/v1/a/c", "/V1/SESSIONS",
  };
  for (const auto& pattern : patterns)
    for (const auto& path : paths) {
      INFO("pattern " << pattern << " path '" << path << "'");
      CHECK(table_groups(pattern, path) == regex_groups(pattern, path));
    }
}

TEST_CASE("http router: our routes' shapes run no regex, others keep theirs", "[http][router]") {
  CHECK(RoutePattern("/v1/sessions").segmented());
  CHECK(RoutePattern(R"(/v1/sessions/([^/]+)/messages)").segmented());
  CHECK(RoutePattern(R"(/api/sessions/([^/]+)/(start|stop|restart|logout))").segmented());
  CHECK(RoutePattern(R"(/v1/files/report\.csv)").segmented());
  CHECK_FALSE(RoutePattern(".*").segmented());
  CHECK_FALSE(RoutePattern(R"(/(v[0-9]+\.[0-9]+)/([^/]+))").segmented());
  CHECK_FALSE(RoutePattern(R"(/v1/items/(\d+))").segmented());
  CHECK_THROWS_AS(RoutePattern("/v1/(unclosed"), std::regex_error);  // a bad pattern fails at registration, as before
  // Labels: groups become {}, escapes are undone.
  CHECK(RoutePattern(R"(/v1/sessions/([^/]+)/messages)").label() == "/v1/sessions/{}/messages");
  CHECK(RoutePattern(R"(/api/sessions/([^/]+)/(start|stop))").label() == "/api/sessions/{}/{}");
  CHECK(RoutePattern(R"(/(v[0-9]+\.[0-9]+)/([^/]+))").label() == "/{}/{}");
  CHECK(RoutePattern(R"(/v1/files/report\.csv)").label() == "/v1/files/report.csv");
}

TEST_CASE("http router: the first registered route of the method wins, across segment and regex routes", "[http][router]") {
  RouteTable table;
  const auto get_one = table.add("GET", R"(/v1/sessions/([^/]+))");
  const auto get_any = table.add("GET", ".*");
  const auto post_msg = table.add("POST", R"(/v1/sessions/([^/]+)/messages)");
  const auto post_any = table.add("POST", R"(/v1/sessions/(.+))");
  const auto post_lit = table.add("POST", "/v1/sessions/main/messages");  // shadowed by the first POST
  std::vector<std::string> groups;
  CHECK(table.find("GET", "/v1/sessions/main", groups) == get_one);
  CHECK(groups == std::vector<std::string>{"/v1/sessions/main", "main"});
  CHECK(table.find("GET", "/anything/else", groups) == get_any);
  CHECK(groups == std::vector<std::string>{"/anything/else"});
  CHECK(table.find("POST", "/v1/sessions/main/messages", groups) == post_msg);
  CHECK(groups == std::vector<std::string>{"/v1/sessions/main/messages", "main"});
  CHECK(table.find("POST", "/v1/sessions/a/b/c", groups) == post_any);
  CHECK(groups == std::vector<std::string>{"/v1/sessions/a/b/c", "a/b/c"});
  CHECK_FALSE(table.find("DELETE", "/v1/sessions/main", groups));  // no route of that method
  CHECK_FALSE(table.find("post", "/v1/sessions/main/messages", groups));  // methods are case-sensitive
  CHECK(table.pattern(post_lit).label() == "/v1/sessions/main/messages");
  CHECK(table.method(post_lit) == "POST");
  CHECK(table.size() == 5);
}

TEST_CASE("http server: unknown paths and known paths with another method are 404, routed requests get params and labels",
          "[http][router]") {
  sb::http::Server server;
  std::mutex mu;
  std::vector<std::pair<std::string, int>> logged;  // route label, status
  server.Get(R"(/v1/sessions/([^/]+))", [](const sb::http::Request& req, sb::http::Response& res) {
    res.set_content(req.matches.at(1) + "|" + req.route + "|" + req.get_param_value("x"), "text/plain");
  });
  server.async_route("POST", R"(/v1/sessions/([^/]+)/(start|stop))", [](const sb::http::Request& req, sb::http::Responder respond) {
    sb::http::Response res;
    res.status = 202;
    res.set_content(req.matches.at(1) + "|" + req.matches.at(2) + "|" + req.route, "text/plain");
    respond(std::move(res));
  });
  server.set_logger([&](const sb::http::Request& req, const sb::http::Response& res) {
    std::lock_guard lock(mu);
    logged.emplace_back(req.route, res.status);
  });
  const int port = server.bind_listen("127.0.0.1:0", "test");
  server.start();
  httplib::Client c("127.0.0.1", port);
  auto got = c.Get("/v1/sessions/acme%2D1?x=7");
  REQUIRE(got);
  CHECK(got->status == 200);
  CHECK(got->body == "acme-1|/v1/sessions/{}|7");  // the group comes from the %-decoded path
  auto action = c.Post("/v1/sessions/acme/stop", "", "text/plain");
  REQUIRE(action);
  CHECK(action->status == 202);
  CHECK(action->body == "acme|stop|/v1/sessions/{}/{}");
  auto other_action = c.Post("/v1/sessions/acme/pause", "", "text/plain");
  REQUIRE(other_action);
  CHECK(other_action->status == 404);
  auto wrong_method = c.Delete("/v1/sessions/acme");
  REQUIRE(wrong_method);
  CHECK(wrong_method->status == 404);  // the server has no 405: a path without a route of this method is unknown
  auto deeper = c.Get("/v1/sessions/acme/x");
  REQUIRE(deeper);
  CHECK(deeper->status == 404);
  server.stop();
  std::lock_guard lock(mu);
  const std::vector<std::pair<std::string, int>> expected = {
      {"/v1/sessions/{}", 200}, {"/v1/sessions/{}/{}", 202}, {"", 404}, {"", 404}, {"", 404}};
  CHECK(logged == expected);
}
