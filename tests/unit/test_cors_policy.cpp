// CorsPolicy's decisions on requests as the server hands them over (the integration test
// drives a live intake with a real HTTP client).
#include <catch2/catch.hpp>

#include "switchboard/producers/cors_policy.hpp"

namespace {
sb::http::Request cors_request(std::string method, std::string path, std::vector<std::pair<std::string, std::string>> headers) {
  sb::http::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.headers = std::move(headers);
  return r;
}
}  // namespace

TEST_CASE("cors: a listed origin is echoed exactly, others get only Vary, non-/v1 routes nothing", "[unit][cors]") {
  const sb::CorsPolicy cors({"https://App.Example.com", "http://localhost:3000"});
  REQUIRE(cors.enabled());
  CHECK(cors.allows("https://app.example.com"));
  CHECK_FALSE(cors.allows("https://app.example.com.evil.net"));
  CHECK_FALSE(cors.allows("http://app.example.com"));  // another scheme is another origin
  CHECK_FALSE(cors.allows(""));

  sb::http::Response ok;
  ok.set_header("Vary", "Accept");
  cors.decorate(cors_request("GET", "/v1/events/stream", {{"Origin", "http://localhost:3000"}}), ok);
  CHECK(ok.get_header_value("Access-Control-Allow-Origin") == "http://localhost:3000");
  CHECK(ok.get_header_value("Vary") == "Accept, Origin");

  sb::http::Response foreign;
  cors.decorate(cors_request("GET", "/v1/events/stream", {{"Origin", "https://evil.example"}}), foreign);
  CHECK(foreign.get_header_value("Access-Control-Allow-Origin").empty());
  CHECK(foreign.get_header_value("Vary") == "Origin");

  sb::http::Response health;
  cors.decorate(cors_request("GET", "/health", {{"Origin", "http://localhost:3000"}}), health);
  CHECK(health.headers.empty());
}

TEST_CASE("cors: preflights are answered for /v1 only, 403 for an unlisted origin", "[unit][cors]") {
  const sb::CorsPolicy cors({"https://app.example.com"});
  sb::http::Response res;
  REQUIRE(cors.preflight(cors_request("OPTIONS", "/v1/sessions/main/messages",
                                      {{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "POST"}}),
                         res));
  CHECK(res.status == 204);
  CHECK(res.get_header_value("Access-Control-Allow-Methods").find("POST") != std::string::npos);
  CHECK(res.get_header_value("Access-Control-Allow-Headers").find("Idempotency-Key") != std::string::npos);

  sb::http::Response refused;
  REQUIRE(cors.preflight(cors_request("OPTIONS", "/v1/events/stream", {{"Origin", "https://x.example"}, {"Access-Control-Request-Method", "GET"}}),
                         refused));
  CHECK(refused.status == 403);
  CHECK(refused.get_header_value("Access-Control-Allow-Origin").empty());

  sb::http::Response untouched;
  CHECK_FALSE(cors.preflight(cors_request("OPTIONS", "/v1/events/stream", {{"Origin", "https://app.example.com"}}), untouched));  // no ACRM: not a preflight
  CHECK_FALSE(cors.preflight(cors_request("OPTIONS", "/metrics", {{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "GET"}}),
                             untouched));
  CHECK_FALSE(sb::CorsPolicy(std::vector<std::string>{}).enabled());
}
