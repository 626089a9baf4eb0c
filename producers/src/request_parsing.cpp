#include "switchboard/producers/request_parsing.hpp"
#include "switchboard/producers/send_request_check.hpp"

#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>

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

namespace {
// A schema-valid send body → the request (the idempotency key settled, send_at read).
SendMessageRequest send_request_from(const json& body, const std::optional<std::string>& idempotency_header) {
  SendMessageRequest r{body["to"], body["text"], body.value("priority", "default"), idempotency_header, std::nullopt, 0};
  if (body.contains("idempotency_key")) {
    const std::string in_body = body["idempotency_key"];
    if (r.idempotency_key && *r.idempotency_key != in_body)
      throw RequestRejected(422, "Idempotency-Key header and idempotency_key field differ", "idempotency_key");
    r.idempotency_key = in_body;
  }
  if (r.idempotency_key && (r.idempotency_key->empty() || r.idempotency_key->size() > 255))
    throw RequestRejected(422, "Idempotency-Key must be 1 to 255 characters", "idempotency_key");
  if (body.contains("send_at")) {
    r.send_at = body["send_at"].get<std::string>();
    if (!rfc3339_in_range(*r.send_at)) throw RequestRejected(422, "'" + *r.send_at + "' is not a valid RFC 3339 time", "send_at");
    r.send_at_unix_ms = rfc3339_unix_ms(*r.send_at);
  }
  return r;
}

// schemas/http/send_message_request.json as SendBodyShortcut::accepts was written for it.
constexpr const char* kSendSchemaForShortcut = R"json({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "$id": "https://switchboard.dev/schemas/http/send_message_request.json",
  "title": "Body of POST /v1/sessions/{session}/messages",
  "type": "object",
  "required": ["to", "text"],
  "additionalProperties": false,
  "properties": {
    "to": {
      "description": "Recipient in E.164 form, e.g. +15551234567",
      "type": "string", "maxLength": 16,
      "pattern": "^\\+[1-9][0-9]{6,14}$"
    },
    "text": { "type": "string", "minLength": 1, "maxLength": 4096 },
    "priority": {
      "description": "Lane the command travels on; default is 'default'",
      "enum": ["high", "default", "low"]
    },
    "send_at": {
      "description": "Send at this time (RFC 3339) instead of now: answered 202 with status 'scheduled', published to its lane when due (a time in the past: at once), cancellable with DELETE /v1/messages/{id} until then. At most scheduler.max_ahead_days ahead",
      "type": "string", "maxLength": 64,
      "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
    },
    "idempotency_key": {
      "description": "Same key (per tenant) returns the same message id instead of a second message; the Idempotency-Key header does the same",
      "type": "string", "minLength": 1, "maxLength": 255
    }
  }
})json";

// ^\+[1-9][0-9]{6,14}$ (E.164), which also keeps it within maxLength 16.
bool e164_for_shortcut(const std::string& s) {
  if (s.size() < 8 || s.size() > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') return false;
  for (std::size_t i = 2; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}
}  // namespace

SendMessageRequest parse_send_request(std::string_view body_text, const std::optional<std::string>& idempotency_header,
                               const SchemaSet& schemas) {
  return send_request_from(read_body(body_text, schemas, "http/send_message_request"), idempotency_header);
}

SendBodyShortcut::SendBodyShortcut(const nlohmann::json& schema_document)
    : enabled_(schema_document == json::parse(kSendSchemaForShortcut)) {}

SendBodyShortcut SendBodyShortcut::from_dir(const std::string& schemas_dir) {
  std::ifstream in(schemas_dir + "/http/send_message_request.json");
  std::stringstream text;
  text << in.rdbuf();
  const json doc = json::parse(text.str(), nullptr, false);
  return SendBodyShortcut(doc.is_discarded() ? json() : doc);
}

bool SendBodyShortcut::accepts(const json& body) const {
  if (!enabled_ || !body.is_object()) return false;
  bool to = false, text = false;
  for (const auto& [key, value] : body.items()) {
    if (!value.is_string()) return false;
    const auto& v = value.get_ref<const std::string&>();
    if (key == "to") {
      if (!e164_for_shortcut(v)) return false;
      to = true;
    } else if (key == "text") {
      // Bytes bound the code points valijson counts: 1..4096 bytes is 1..4096 characters.
      if (v.empty() || v.size() > 4096) return false;
      text = true;
    } else if (key == "priority") {
      if (v != "high" && v != "default" && v != "low") return false;
    } else if (key == "idempotency_key") {
      if (v.empty() || v.size() > 255) return false;
    } else {
      return false;  // send_at (its pattern), or a field the schema refuses: valijson decides
    }
  }
  return to && text;
}

SendMessageRequest SendBodyShortcut::parse(std::string_view body_text, const std::optional<std::string>& idempotency_header,
                                           const SchemaSet& schemas) const {
  if (enabled_) {
    json body;
    try {
      body = json::parse(body_text, nullptr, false);
    } catch (const json::exception&) {
      body = json(json::value_t::discarded);
    }
    if (!body.is_discarded() && accepts(body)) return send_request_from(body, idempotency_header);
  }
  return parse_send_request(body_text, idempotency_header, schemas);
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
