#pragma once
// What intake makes of a request before anything is stored or published: the body parsed and
// schema-checked, the idempotency key settled, the webhook-management fields read. Pure (no
// server, database or DNS), so the routes and the fuzz targets (tests/fuzz/) run the very same
// code. Every refusal is a RequestRejected carrying the HTTP status to answer with.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/schema.hpp"

namespace sb {

// A client error: 400 (not JSON) or 422 (JSON, but not what the route takes).
class RequestRejected : public InvalidInput {
 public:
  RequestRejected(int status, const std::string& message, std::string field = {})
      : InvalidInput(message, std::move(field)), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// "Bearer <key>" → the key; nullopt for any other Authorization value.
std::optional<std::string> bearer_token(std::string_view authorization);

// POST /v1/sessions/{session}/messages
struct SendMessageRequest {
  std::string to, text, priority;
  std::optional<std::string> idempotency_key;  // header or body field (they must agree)
  std::optional<std::string> send_at;          // scheduled send: RFC 3339, fields in range
  long long send_at_unix_ms = 0;               // the same instant, for the range checks
};
SendMessageRequest parse_send_request(std::string_view body, const std::optional<std::string>& idempotency_header,
                               const SchemaSet& schemas);

// POST /v1/webhooks
struct WebhookCreateRequest {
  std::string url;
  std::vector<std::string> events;
  std::string ordering = "none";
  bool enabled = true;
  std::optional<std::string> secret;  // validated whsec_…; absent: the route generates one
};
WebhookCreateRequest parse_webhook_create(std::string_view body, const SchemaSet& schemas);

// PATCH /v1/webhooks/{id}
struct WebhookUpdateRequest {
  std::optional<std::string> url;
  std::optional<std::vector<std::string>> events;
  std::optional<bool> enabled;
  std::optional<std::string> ordering;
  bool rotate_secret = false;         // rotate_secret: true, or a secret given
  std::optional<std::string> secret;  // validated whsec_…; absent with rotate: generated
};
WebhookUpdateRequest parse_webhook_update(std::string_view body, const SchemaSet& schemas);

// POST /v1/webhooks/{id}/replay: the RFC 3339 "since", shape and field ranges checked.
std::string parse_replay_since(std::string_view body, const SchemaSet& schemas);

// Empty when `url` is an http(s) URL of the form scheme://host[:port][/path], else why not; on
// success `host` is the host to check for private addresses (brackets of IPv6 literals removed).
std::string url_syntax_problem(const std::string& url, std::string& host);

}  // namespace sb
