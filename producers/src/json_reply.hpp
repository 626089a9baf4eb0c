#pragma once
// JSON answers shared by intake's routes: every error is {"error": why, "field"?: which}.
#include "switchboard/core/http_server.hpp"

#include <nlohmann/json.hpp>
#include <string>

namespace sb {

inline void reply(http::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Invalid UTF-8 becomes U+FFFD instead of an exception: error messages quote client input
  // (the JSON parser's own message names the offending byte), and a reply must never fail.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

inline void reply_error(http::Response& res, int status, const std::string& error, const std::string& field = {}) {
  nlohmann::json body = {{"error", error}};
  if (!field.empty()) body["field"] = field;
  reply(res, status, body);
}

}  // namespace sb
