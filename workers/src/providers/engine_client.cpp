#include "switchboard/workers/providers/engine_client.hpp"

#include <nlohmann/json.hpp>

#include "switchboard/core/node_registry.hpp"
#include "switchboard/workers/providers/http_outcome.hpp"

namespace sb {

using json = nlohmann::json;

EngineClient::EngineClient(const EngineNode& node, int timeout_ms, int64_t generation)
    : node_(node), generation_(generation), http_(timeout_ms, std::min(timeout_ms, 2000)) {}

HttpResponse EngineClient::call(const std::string& method, const std::string& path, const std::string& body, bool json_accept) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (json_accept) headers.emplace_back("Accept", "application/json");
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  if (!node_.api_key.empty()) headers.emplace_back("X-Api-Key", node_.api_key);
  if (generation_ > 0) headers.emplace_back(kGenerationHeader, std::to_string(generation_));
  auto r = http_.request(method, node_.url + path, body, headers);
  const std::string what = "engine " + node_.name + " " + method + " " + path;
  if (!r.transport_ok()) throw Unavailable(what + ": " + r.error + " (retried; check the node is up)");
  if (r.status == 429 || r.status >= 500) throw Unavailable(what + ": HTTP " + std::to_string(r.status) + ": " + excerpt(r.body));
  if (r.status == 409 && r.body.find("stale_generation") != std::string::npos)
    throw StalePlacement(what + " with generation " + std::to_string(generation_) + ": refused, the node knows a newer placement: " + excerpt(r.body));
  return r;
}

EngineClient::State EngineClient::state_of(const HttpResponse& r, const std::string& what) {
  if (r.status < 200 || r.status > 299)
    throw ProviderRefused("engine " + node_.name + " " + what + ": HTTP " + std::to_string(r.status) + ": " + excerpt(r.body));
  State s;
  try {
    const auto j = json::parse(r.body);
    s.status = j.value("status", "");
    if (j.contains("me") && j["me"].is_object() && j["me"].contains("id") && j["me"]["id"].is_string()) {
      std::string id = j["me"]["id"];
      s.account = id.substr(0, id.find('@'));
    }
  } catch (const json::exception&) {
    // Some engine versions answer lifecycle calls with an empty or non-JSON body: the status
    // then arrives by webhook.
  }
  return s;
}

namespace {
json session_body(const std::string& name, const std::string& callback_url, const std::string& hmac_key,
                  const std::string& tenant, const std::string& session) {
  return {{"name", name},
          {"start", true},
          {"config",
           {{"webhooks", json::array({{{"url", callback_url},
                                        {"events", {"session.status", "message", "message.ack"}},
                                        {"hmac", {{"key", hmac_key}}}}})},
            {"metadata", {{"sb.tenant", tenant}, {"sb.session", session}}}}}};
}
}  // namespace

EngineClient::State EngineClient::start(const std::string& name, const std::string& callback_url, const std::string& hmac_key,
                                        const std::string& tenant, const std::string& session) {
  auto r = call("POST", "/api/sessions", session_body(name, callback_url, hmac_key, tenant, session).dump());
  if (r.status == 422 || r.status == 409) r = call("POST", "/api/sessions/" + name + "/start", "");  // it exists: start it
  return state_of(r, "start");
}

EngineClient::State EngineClient::stop(const std::string& name) {
  auto r = call("POST", "/api/sessions/" + name + "/stop", "");
  if (r.status == 404) return {"STOPPED", std::nullopt};  // not on the engine: stopped indeed
  return state_of(r, "stop");
}

EngineClient::State EngineClient::restart(const std::string& name, const std::string& callback_url, const std::string& hmac_key,
                                          const std::string& tenant, const std::string& session) {
  auto r = call("POST", "/api/sessions/" + name + "/restart", "");
  if (r.status == 404) return start(name, callback_url, hmac_key, tenant, session);
  return state_of(r, "restart");
}

EngineClient::State EngineClient::logout(const std::string& name) {
  auto r = call("POST", "/api/sessions/" + name + "/logout", "");
  if (r.status == 404) return {"STOPPED", std::nullopt};
  auto s = state_of(r, "logout");
  s.account.reset();
  return s;
}

void EngineClient::remove(const std::string& name) {
  auto r = call("DELETE", "/api/sessions/" + name, "");
  if (r.status == 404) return;
  state_of(r, "delete");
}

std::optional<EngineClient::Qr> EngineClient::qr(const std::string& name) {
  auto raw = call("GET", "/api/" + name + "/auth/qr?format=raw", "");
  if (raw.status == 422 || raw.status == 404) return std::nullopt;
  auto image = call("GET", "/api/" + name + "/auth/qr", "");
  if (image.status == 422 || image.status == 404) return std::nullopt;
  if (raw.status != 200 || image.status != 200)
    throw ProviderRefused("engine " + node_.name + " QR of " + name + ": HTTP " + std::to_string(raw.status) + "/" +
                          std::to_string(image.status));
  try {
    return Qr{json::parse(raw.body).at("value").get<std::string>(), json::parse(image.body).at("data").get<std::string>()};
  } catch (const json::exception& e) {
    throw ProviderRefused("engine " + node_.name + " QR of " + name + ": unreadable answer: " + e.what());
  }
}

std::vector<std::string> EngineClient::running() {
  auto r = call("GET", "/api/sessions", "");
  if (r.status != 200) throw ProviderRefused("engine " + node_.name + " GET /api/sessions: HTTP " + std::to_string(r.status) + ": " + excerpt(r.body));
  std::vector<std::string> out;
  try {
    for (const auto& s : json::parse(r.body))
      if (s.is_object() && s.contains("name") && s["name"].is_string() && s.value("status", "") != "STOPPED") out.push_back(s["name"]);
  } catch (const json::exception& e) {
    throw ProviderRefused("engine " + node_.name + " GET /api/sessions: unreadable answer: " + e.what());
  }
  return out;
}

}  // namespace sb
