#include "switchboard/producers/callback_records.hpp"

#include <chrono>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/schema.hpp"

namespace sb {

using json = nlohmann::json;

namespace {

// Provider times the clock can't hold are refused: its nanoseconds end in the year 2262, and
// converting a later time would overflow (undefined behaviour: garbage dates). No provider means them.
constexpr int64_t kMaxEpochSeconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::duration::max()).count() - 1;

std::string at_from_ms(int64_t ms) {
  if (ms / 1000 > kMaxEpochSeconds) throw InvalidInput("engine webhook: 'timestamp' is beyond the year 2262", "timestamp");
  return to_rfc3339(Clock::time_point(std::chrono::milliseconds(ms)));
}

// A signed body whose fields have the wrong JSON types (a number where a string belongs) is
// malformed input, a 400, like a missing field: nlohmann's type errors must not escape as a 500.
template <typename Fn>
auto malformed_is_invalid(const char* where, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(std::string(where) + ": a field has the wrong type (" + e.what() + ")");
  }
}

const json& member(const json& j, const char* name, const char* where) {
  auto it = j.find(name);
  if (it == j.end()) throw InvalidInput(std::string(where) + ": missing '" + name + "'", name);
  return *it;
}

std::string text(const json& j, const char* name, const char* where) {
  const auto& v = member(j, name, where);
  if (!v.is_string()) throw InvalidInput(std::string(where) + ": '" + name + "' must be a string", name);
  return v.get<std::string>();
}

std::string digits_of(const std::string& chat_id) {
  std::string d;
  for (char c : chat_id.substr(0, chat_id.find('@')))
    if (c >= '0' && c <= '9') d += c;
  return d;
}

// Cloud API timestamps are epoch seconds as strings.
std::string at_from_seconds_text(const json& j) {
  auto it = j.find("timestamp");
  if (it == j.end()) return now_rfc3339();
  try {
    const long long s = it->is_string() ? std::stoll(it->get<std::string>()) : it->get<long long>();
    if (s > kMaxEpochSeconds || s < -kMaxEpochSeconds) throw std::out_of_range("timestamp");
    return to_rfc3339(Clock::time_point(std::chrono::seconds(s)));
  } catch (const std::exception&) {
    throw InvalidInput("timestamp must be epoch seconds (up to the year 2262)", "timestamp");
  }
}

}  // namespace

json CallbackRecord::to_json() const {
  return {{"id", id}, {"kind", kind}, {"provider", provider}, {"tenant", tenant}, {"session", session}, {"at", at}, {"data", data}};
}

namespace {

EngineCallback parse_engine_envelope(std::string_view body) {
  const auto j = parse_json(body);
  if (!j.is_object()) throw InvalidInput("engine webhook: the body must be a JSON object");
  EngineCallback cb;
  cb.event = text(j, "event", "engine webhook");
  cb.session = text(j, "session", "engine webhook");
  cb.payload = j.value("payload", json::object());
  if (!cb.payload.is_object()) throw InvalidInput("engine webhook: 'payload' must be an object", "payload");
  int64_t ms = 0;
  if (auto t = j.find("timestamp"); t != j.end() && t->is_number_integer()) ms = t->get<int64_t>();
  cb.at = ms > 0 ? at_from_ms(ms) : now_rfc3339();
  // Older engines send no id: the body's hash stands in (a retried delivery repeats the body).
  if (auto id = j.find("id"); id != j.end() && id->is_string() && !id->get<std::string>().empty()) cb.id = *id;
  else cb.id = "sha256:" + sha256_hex(body);
  if (auto me = j.find("me"); me != j.end() && me->is_object() && me->contains("id") && (*me)["id"].is_string()) {
    auto d = digits_of((*me)["id"]);
    if (!d.empty()) cb.account = d;
  }
  return cb;
}

std::optional<CallbackRecord> engine_payload_record(const EngineCallback& cb, const std::string& tenant,
                                                   const std::string& session) {
  CallbackRecord r;
  r.id = cb.id;
  r.provider = "engine";
  r.tenant = tenant;
  r.session = session;
  r.at = cb.at;
  const auto& p = cb.payload;
  if (cb.event == "session.status") {
    r.kind = "status";
    r.data = {{"status", text(p, "status", "session.status payload")}};
    if (cb.account) r.data["account"] = *cb.account;
    return r;
  }
  if (cb.event == "message.ack") {
    const auto& ack = member(p, "ack", "message.ack payload");
    if (!ack.is_number_integer()) throw InvalidInput("message.ack payload: 'ack' must be an integer", "ack");
    const int level = ack.get<int>();
    std::string status;
    if (level == -1) status = "failed";
    else if (level == 1) status = "sent";
    else if (level == 2) status = "delivered";
    else if (level >= 3) status = "read";  // READ 3, PLAYED 4
    else return std::nullopt;              // PENDING 0: nothing new
    std::string id;
    if (p.contains("id") && p["id"].is_object() && p["id"].contains("_serialized")) id = p["id"]["_serialized"];
    else id = text(p, "id", "message.ack payload");
    r.kind = "receipt";
    r.data = {{"provider_message_id", id}, {"status", status}};
    if (status == "failed") r.data["error"] = p.value("ackName", "ERROR");
    return r;
  }
  if (cb.event == "message") {
    if (p.value("fromMe", false)) return std::nullopt;  // our own send echoed back
    r.kind = "inbound";
    r.data = {{"provider_message_id", text(p, "id", "message payload")},
              {"from", "+" + digits_of(text(p, "from", "message payload"))},
              {"text", p.value("body", "")}};
    return r;
  }
  return std::nullopt;
}

std::vector<CloudFact> parse_cloud_body(std::string_view body) {
  const auto j = parse_json(body);
  if (!j.is_object() || j.value("object", "") != "whatsapp_business_account")
    throw InvalidInput("Cloud API webhook: expected {\"object\": \"whatsapp_business_account\", \"entry\": [...]}", "object");
  const auto& entries = member(j, "entry", "Cloud API webhook");
  if (!entries.is_array()) throw InvalidInput("Cloud API webhook: 'entry' must be an array", "entry");
  std::vector<CloudFact> out;
  for (const auto& entry : entries) {
    if (!entry.is_object() || !entry.contains("changes") || !entry["changes"].is_array())
      throw InvalidInput("Cloud API webhook: each entry needs a 'changes' array", "entry");
    for (const auto& change : entry["changes"]) {
      if (!change.is_object() || change.value("field", "") != "messages" || !change.contains("value")) continue;
      const auto& value = change["value"];
      if (!value.is_object()) throw InvalidInput("Cloud API webhook: 'value' must be an object", "value");
      const auto& meta = member(value, "metadata", "Cloud API webhook value");
      const std::string pnid = text(meta, "phone_number_id", "Cloud API webhook metadata");
      if (auto st = value.find("statuses"); st != value.end() && st->is_array())
        for (const auto& s : *st) {
          if (!s.is_object()) throw InvalidInput("Cloud API webhook: each status must be an object", "statuses");
          CallbackRecord r;
          r.kind = "receipt";
          r.provider = "cloud_api";
          const std::string id = text(s, "id", "Cloud API status"), status = text(s, "status", "Cloud API status");
          if (status != "sent" && status != "delivered" && status != "read" && status != "failed") continue;
          r.id = id + ":" + status;
          r.at = at_from_seconds_text(s);
          r.data = {{"provider_message_id", id}, {"status", status}};
          if (status == "failed") {
            std::string why = "failed";
            if (auto e = s.find("errors"); e != s.end() && e->is_array() && !e->empty() && (*e)[0].is_object())
              why = "Graph error " + std::to_string((*e)[0].value("code", 0)) + ": " + (*e)[0].value("title", (*e)[0].value("message", ""));
            r.data["error"] = why;
          }
          out.push_back({pnid, std::move(r)});
        }
      if (auto ms = value.find("messages"); ms != value.end() && ms->is_array())
        for (const auto& m : *ms) {
          if (!m.is_object()) throw InvalidInput("Cloud API webhook: each message must be an object", "messages");
          CallbackRecord r;
          r.kind = "inbound";
          r.provider = "cloud_api";
          r.id = text(m, "id", "Cloud API message");
          r.at = at_from_seconds_text(m);
          std::string body_text;
          if (m.contains("text") && m["text"].is_object()) body_text = m["text"].value("body", "");
          r.data = {{"provider_message_id", r.id}, {"from", "+" + digits_of(text(m, "from", "Cloud API message"))}, {"text", body_text}};
          out.push_back({pnid, std::move(r)});
        }
    }
  }
  return out;
}

}  // namespace

EngineCallback parse_engine_callback(std::string_view body) {
  return malformed_is_invalid("engine webhook", [&] { return parse_engine_envelope(body); });
}

std::optional<CallbackRecord> engine_record(const EngineCallback& cb, const std::string& tenant, const std::string& session) {
  return malformed_is_invalid("engine webhook payload", [&] { return engine_payload_record(cb, tenant, session); });
}

std::vector<CloudFact> parse_cloud_callback(std::string_view body) {
  return malformed_is_invalid("Cloud API webhook", [&] { return parse_cloud_body(body); });
}

}  // namespace sb
