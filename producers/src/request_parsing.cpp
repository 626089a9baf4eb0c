#include "switchboard/producers/request_parsing.hpp"

#include <regex>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/core/webhook_store.hpp"

namespace sb {
using nlohmann::json;

namespace {

// Parsed and schema-checked: 400 when it is not JSON, 422 when the schema refuses it.
json read_body(std::string_view body, const SchemaSet& schemas, const std::string& schema) {
  json doc;
  try {
    doc = parse_json(body);
  } catch (const InvalidInput& e) {
    throw RequestRejected(400, e.what());
  }
  try {
    schemas.validate(schema, doc);
  } catch (const InvalidInput& e) {
    throw RequestRejected(422, e.what(), e.field());
  }
  return doc;
}

void check_events(const std::vector<std::string>& events) {
  for (const auto& p : events)
    if (!valid_event_pattern(p))
      throw RequestRejected(422,
                            "unknown event type '" + p + "': use message.sent, message.failed, message.delivered, message.read, message.received, session.status, session.qr, session.deleted, webhook.endpoint.disabled, "
                            "a family such as session.* or message.*, or *",
                            "events");
}

std::optional<std::string> secret_of(const json& body) {
  if (!body.contains("secret")) return std::nullopt;
  try {
    return parse_webhook_secret(body["secret"].get<std::string>()).encoded;
  } catch (const InvalidInput& e) {
    throw RequestRejected(422, e.what(), "secret");
  }
}

void check_url(const std::string& url) {
  std::string host;
  if (auto why = url_syntax_problem(url, host); !why.empty()) throw RequestRejected(422, why, "url");
}

}  // namespace

std::optional<std::string> bearer_token(std::string_view authorization) {
  constexpr std::string_view prefix = "Bearer ";
  if (authorization.size() <= prefix.size() || authorization.substr(0, prefix.size()) != prefix) return std::nullopt;
  return std::string(authorization.substr(prefix.size()));
}

SendMessageRequest parse_send_request(std::string_view body_text, const std::optional<std::string>& idempotency_header,
                               const SchemaSet& schemas) {
  const json body = read_body(body_text, schemas, "http/send_message_request");
  SendMessageRequest r{body["to"], body["text"], body.value("priority", "default"), idempotency_header};
  if (body.contains("idempotency_key")) {
    const std::string in_body = body["idempotency_key"];
    if (r.idempotency_key && *r.idempotency_key != in_body)
      throw RequestRejected(422, "Idempotency-Key header and idempotency_key field differ", "idempotency_key");
    r.idempotency_key = in_body;
  }
  if (r.idempotency_key && (r.idempotency_key->empty() || r.idempotency_key->size() > 255))
    throw RequestRejected(422, "Idempotency-Key must be 1 to 255 characters", "idempotency_key");
  return r;
}

WebhookCreateRequest parse_webhook_create(std::string_view body_text, const SchemaSet& schemas) {
  const json body = read_body(body_text, schemas, "http/webhook_create_request");
  WebhookCreateRequest r;
  r.url = body["url"];
  r.events = body["events"].get<std::vector<std::string>>();
  r.ordering = body.value("ordering", "none");
  r.enabled = body.value("enabled", true);
  check_events(r.events);
  check_url(r.url);
  r.secret = secret_of(body);
  return r;
}

WebhookUpdateRequest parse_webhook_update(std::string_view body_text, const SchemaSet& schemas) {
  const json body = read_body(body_text, schemas, "http/webhook_update_request");
  WebhookUpdateRequest r;
  if (body.contains("url")) {
    r.url = body["url"].get<std::string>();
    check_url(*r.url);
  }
  if (body.contains("events")) {
    r.events = body["events"].get<std::vector<std::string>>();
    check_events(*r.events);
  }
  if (body.contains("enabled")) r.enabled = body["enabled"].get<bool>();
  if (body.contains("ordering")) r.ordering = body["ordering"].get<std::string>();
  r.rotate_secret = body.value("rotate_secret", false) || body.contains("secret");
  r.secret = secret_of(body);
  return r;
}

std::string parse_replay_since(std::string_view body_text, const SchemaSet& schemas) {
  const json body = read_body(body_text, schemas, "http/webhook_replay_request");
  const std::string since = body["since"];
  if (!rfc3339_in_range(since)) throw RequestRejected(422, "'" + since + "' is not a valid RFC 3339 time", "since");
  return since;
}

std::string url_syntax_problem(const std::string& url, std::string& host) {
  // scheme://host[:port][/path] — no user-info: "https://good@evil" hides where it goes.
  // Bounded first: std::regex recurses per character (see SchemaSet::kMaxPatternInput).
  if (url.size() > 2048) return "URL longer than 2048 characters";
  static const std::regex re(R"(^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?([/?#].*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return "'" + url + "' is not an http(s) URL of the form scheme://host[:port]/path";
  if (m[4].matched && std::stoi(m[4]) > 65535) return "port out of range in '" + url + "'";
  host = m[2];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  return {};
}

}  // namespace sb
