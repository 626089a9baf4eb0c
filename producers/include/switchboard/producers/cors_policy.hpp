#pragma once
// CorsPolicy: browsers on other origins calling intake's /v1 routes (an EventSource on a
// dashboard's own domain, fetch() from a web app), per intake.cors_allowed_origins.
//
// Empty list (the default): no CORS headers at all, OPTIONS is not answered (404), as before;
// a browser then refuses cross-origin reads, which is the safe default. Otherwise, for a /v1
// route:
//   * a preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered before
//     routing: 204 with the allowed methods and headers for a listed origin, 403 naming the
//     config key for any other;
//   * every answer (and an SSE stream's head) carries `Vary: Origin`, and for a listed origin
//     `Access-Control-Allow-Origin: <that origin>` (echoed exactly, never `*`) and the headers a
//     script may read (Retry-After, RateLimit…).
// No Access-Control-Allow-Credentials: intake takes API keys, never cookies, so there is no
// ambient credential a foreign page could borrow. WebSockets are not subject to CORS (the
// browser sends Origin and reads the socket regardless); the API key is what guards them.
#include <string>
#include <vector>

#include "switchboard/core/http_server.hpp"

namespace sb {

class CorsPolicy {
 public:
  // Origins as a browser writes them (scheme://host[:port], no path; "*": any origin), as
  // IntakeConfig::cors_origins() validated them.
  explicit CorsPolicy(const std::vector<std::string>& allowed_origins);

  bool enabled() const { return any_ || !origins_.empty(); }
  bool allows(const std::string& origin) const;
  // Installs the preflight answer and the response headers on `server` (nothing when disabled).
  void install(http::Server& server) const;

  // What install() runs; public for unit tests.
  void decorate(const http::Request& req, http::Response& res) const;
  bool preflight(const http::Request& req, http::Response& res) const;

 private:
  std::vector<std::string> origins_;  // lower case
  bool any_ = false;
};

}  // namespace sb
