#include "switchboard/producers/request_parsing.hpp"

#include <cctype>
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

long long rfc3339_unix_ms(const std::string& t) {
  auto num = [&](std::size_t pos, std::size_t len) { return std::stoll(t.substr(pos, len)); };
  // Days from civil (Howard Hinnant's algorithm): no timegm, no locale, no TZ environment.
  long long y = num(0, 4);
  const long long m = num(5, 2), d = num(8, 2);
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const long long yoe = y - era * 400;
  const long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const long long days = era * 146097 + doe - 719468;
  long long ms = ((days * 24 + num(11, 2)) * 60 + num(14, 2)) * 60000 + num(17, 2) * 1000;
  std::size_t pos = 19;
  if (pos < t.size() && t[pos] == '.') {
    long long frac = 0;
    int digits = 0;
    for (++pos; pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos])); ++pos)
      if (digits < 3) frac = frac * 10 + (t[pos] - '0'), ++digits;
    while (digits < 3) frac *= 10, ++digits;
    ms += frac;
  }
  if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    const long long offset = (num(pos + 1, 2) * 60 + num(pos + 4, 2)) * 60000;
    ms += t[pos] == '+' ? -offset : offset;  // 10:00+02:00 is 08:00Z
  }
  return ms;
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
