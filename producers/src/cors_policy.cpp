#include "switchboard/producers/cors_policy.hpp"

#include "json_reply.hpp"

#include <algorithm>
#include <cctype>


namespace sb {
namespace {

std::string cors_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool cors_applies(const http::Request& req) { return req.path.rfind("/v1/", 0) == 0; }

// Methods and request headers intake's /v1 routes take; what a preflight may ask for.
constexpr const char* kCorsMethods = "GET, POST, PATCH, DELETE";
constexpr const char* kCorsRequestHeaders = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID";
// Answer headers a script may read (the CORS-safelisted ones need no mention).
constexpr const char* kCorsExposedHeaders = "Retry-After, RateLimit, RateLimit-Policy, Idempotent-Replayed";

// Adds `what` to the answer's Vary unless it is listed already.
void add_vary(http::Response& res, const std::string& what) {
  const auto vary = res.get_header_value("Vary");
  if (vary.empty()) return res.set_header("Vary", what);
  if (cors_lower(vary).find(cors_lower(what)) == std::string::npos) res.set_header("Vary", vary + ", " + what);
}

}  // namespace

CorsPolicy::CorsPolicy(const std::vector<std::string>& allowed_origins) {
  for (const auto& o : allowed_origins) {
    if (o == "*") any_ = true;
    else origins_.push_back(cors_lower(o));  // scheme and host are case-insensitive
  }
}

bool CorsPolicy::allows(const std::string& origin) const {
  if (origin.empty()) return false;
  if (any_) return true;
  const auto l = cors_lower(origin);
  return std::find(origins_.begin(), origins_.end(), l) != origins_.end();
}

void CorsPolicy::decorate(const http::Request& req, http::Response& res) const {
  if (!cors_applies(req)) return;
  add_vary(res, "Origin");  // caches must not hand one origin's answer to another
  const auto origin = req.get_header_value("Origin");
  if (!allows(origin)) return;
  res.set_header("Access-Control-Allow-Origin", origin);
  res.set_header("Access-Control-Expose-Headers", kCorsExposedHeaders);
}

bool CorsPolicy::preflight(const http::Request& req, http::Response& res) const {
  if (req.method != "OPTIONS" || !cors_applies(req) || !req.has_header("Origin") ||
      !req.has_header("Access-Control-Request-Method"))
    return false;
  const auto origin = req.get_header_value("Origin");
  if (!allows(origin)) {
    reply_error(res, 403, "origin '" + origin + "' is not allowed to call this API from a browser: add it to intake.cors_allowed_origins");
    res.set_header("Vary", "Origin");
    return true;
  }
  res.status = 204;
  res.set_header("Access-Control-Allow-Origin", origin);
  res.set_header("Access-Control-Allow-Methods", kCorsMethods);
  res.set_header("Access-Control-Allow-Headers", kCorsRequestHeaders);
  res.set_header("Access-Control-Max-Age", "600");  // browsers cap it anyway (Chrome: 2 h)
  res.set_header("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  return true;
}

void CorsPolicy::install(http::Server& server) const {
  if (!enabled()) return;
  server.set_preflight([this](const http::Request& req, http::Response& res) { return preflight(req, res); });
  server.set_decorator([this](const http::Request& req, http::Response& res) { decorate(req, res); });
}

}  // namespace sb
