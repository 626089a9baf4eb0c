#include "switchboard/producers/webhook_api.hpp"

#include "json_reply.hpp"

#include <nlohmann/json.hpp>
#include <regex>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/webhook_signature.hpp"

namespace sb {
using nlohmann::json;

std::vector<std::string> split_csv(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::stringstream ss(text);
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

namespace {

json to_json(const WebhookEndpoint& e, bool with_secret) {
  json out = {{"id", e.id},           {"url", e.url},         {"events", e.events},
              {"enabled", e.enabled}, {"ordering", e.ordering}, {"created_at", e.created_at},
              {"updated_at", e.updated_at}};
  if (with_secret) out["secret"] = e.secret;
  if (e.disabled_reason) out["disabled_reason"] = *e.disabled_reason;
  if (e.previous_secret_expires_at) out["previous_secret_expires_at"] = *e.previous_secret_expires_at;
  return out;
}

// Parses and schema-checks a body; writes the 400/422 and returns nullopt when it is bad.
std::optional<json> read_body(const SchemaSet& schemas, const std::string& schema, const httplib::Request& req,
                              httplib::Response& res) {
  try {
    auto body = parse_json(req.body);
    schemas.validate(schema, body);
    return body;
  } catch (const InvalidInput& e) {
    reply_error(res, e.field().empty() && std::string(e.what()).rfind("malformed", 0) == 0 ? 400 : 422, e.what(), e.field());
    return std::nullopt;
  }
}

// Writes a 422 naming the first unknown event pattern; true when all are known.
bool events_known(const std::vector<std::string>& events, httplib::Response& res) {
  for (const auto& p : events)
    if (!valid_event_pattern(p)) {
      reply_error(res, 422,
                  "unknown event type '" + p + "': use message.sent, message.failed, webhook.endpoint.disabled, "
                  "a family such as session.* or message.*, or *",
                  "events");
      return false;
    }
  return true;
}

// The given whsec_ secret (validated) or a new one; nullopt after writing the 422.
std::optional<std::string> secret_or_422(const json& body, httplib::Response& res) {
  try {
    return body.contains("secret") ? parse_webhook_secret(body["secret"]).encoded : new_webhook_secret();
  } catch (const InvalidInput& err) {
    reply_error(res, 422, err.what(), "secret");
    return std::nullopt;
  }
}

}  // namespace

WebhookApi::WebhookApi(const Config& config, pg::Pool& pool, const SchemaSet& schemas, Authenticate authenticate)
    : config_(config),
      schemas_(schemas),
      store_(pool),
      guard_(split_csv(config.webhooks.allow_cidrs)),
      authenticate_(std::move(authenticate)) {}

void WebhookApi::mount(httplib::Server& server) {
  server.Post("/v1/webhooks", [this](const auto& req, auto& res) { create(req, res); });
  server.Get("/v1/webhooks", [this](const auto& req, auto& res) { list(req, res); });
  server.Get(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { get(req, res); });
  server.Patch(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { update(req, res); });
  server.Delete(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { remove(req, res); });
}

std::string WebhookApi::url_problem(const std::string& url) const {
  // scheme://host[:port][/path] — no user-info: "https://good@evil" hides where it goes.
  static const std::regex re(R"(^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?([/?#].*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return "'" + url + "' is not an http(s) URL of the form scheme://host[:port]/path";
  if (m[4].matched && std::stoi(m[4]) > 65535) return "port out of range in '" + url + "'";
  std::string host = m[2];
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  if (auto why = guard_.check_host(host)) return *why;
  return {};
}

void WebhookApi::create(const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  auto body = read_body(schemas_, "http/webhook_create_request", req, res);
  if (!body) return;
  WebhookEndpoint e;
  e.tenant_id = *tenant;
  e.url = (*body)["url"];
  e.events = (*body)["events"].get<std::vector<std::string>>();
  e.ordering = body->value("ordering", "none");
  e.enabled = body->value("enabled", true);
  if (!events_known(e.events, res)) return;
  if (auto why = url_problem(e.url); !why.empty()) return reply_error(res, 422, why, "url");
  auto secret = secret_or_422(*body, res);
  if (!secret) return;
  e.secret = *secret;
  auto created = store_.create(e);
  log::info("webhook.endpoint_created", {{"tenant", *tenant}, {"endpoint", created.id}, {"url", created.url}});
  reply(res, 201, to_json(created, true));
}

void WebhookApi::list(const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  json items = json::array();
  for (const auto& e : store_.list(*tenant)) items.push_back(to_json(e, false));
  reply(res, 200, {{"data", items}});
}

void WebhookApi::get(const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  auto e = store_.get(*tenant, req.matches[1]);
  if (!e) return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  reply(res, 200, to_json(*e, false));
}

void WebhookApi::update(const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  auto body = read_body(schemas_, "http/webhook_update_request", req, res);
  if (!body) return;
  WebhookEndpointChange ch;
  ch.rotation_window_s = config_.webhooks.rotation_window_s;
  if (body->contains("url")) {
    ch.url = (*body)["url"].get<std::string>();
    if (auto why = url_problem(*ch.url); !why.empty()) return reply_error(res, 422, why, "url");
  }
  if (body->contains("events")) {
    ch.events = (*body)["events"].get<std::vector<std::string>>();
    if (!events_known(*ch.events, res)) return;
  }
  if (body->contains("enabled")) ch.enabled = (*body)["enabled"].get<bool>();
  if (body->contains("ordering")) ch.ordering = (*body)["ordering"].get<std::string>();
  const bool rotate = body->value("rotate_secret", false) || body->contains("secret");
  if (rotate) {
    ch.new_secret = secret_or_422(*body, res);
    if (!ch.new_secret) return;
  }
  auto e = store_.update(*tenant, req.matches[1], ch);
  if (!e) return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  log::info("webhook.endpoint_updated", {{"tenant", *tenant}, {"endpoint", e->id}, {"rotated", rotate ? "true" : "false"}});
  reply(res, 200, to_json(*e, rotate));
}

void WebhookApi::remove(const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  if (!store_.remove(*tenant, req.matches[1]))
    return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  log::info("webhook.endpoint_deleted", {{"tenant", *tenant}, {"endpoint", std::string(req.matches[1])}});
  res.status = 204;
}

}  // namespace sb
