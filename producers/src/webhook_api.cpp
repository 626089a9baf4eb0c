#include "switchboard/producers/webhook_api.hpp"

#include "json_reply.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/producers/request_parsing.hpp"

namespace sb {
using nlohmann::json;

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

void reply_no_endpoint(http::Response& res, const std::string& id) {
  reply_error(res, 404, "no webhook endpoint '" + id + "' for this tenant", "id");
}

bool subscribed(const WebhookEndpoint& e, const std::string& type) {
  return std::any_of(e.events.begin(), e.events.end(), [&](const auto& p) { return event_matches(p, type); });
}

ScheduledDelivery delivery_of(const WebhookEndpoint& e, const StoredEvent& ev) {
  ScheduledDelivery d;
  d.endpoint_id = e.id;
  d.tenant_id = e.tenant_id;
  d.event_id = ev.id;
  d.event_type = ev.type;
  d.session = ev.session;
  d.body = ev.body;
  d.attempts = 0;
  d.due_in_s = 0;
  d.ordered = e.ordering == "per_session";
  return d;
}

// ?limit= as an integer in [lo, hi], the default when absent; nullopt when anything else.
std::optional<int> int_param(const http::Request& req, const char* name, int fallback, int lo, int hi) {
  if (!req.has_param(name)) return fallback;
  const auto text = req.get_param_value(name);
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) return std::nullopt;
  return value;
}

}  // namespace

WebhookApi::WebhookApi(const Config& config, pg::Pool& pool, const SchemaSet& schemas, Authenticate authenticate)
    : config_(config),
      schemas_(schemas),
      store_(pool),
      events_(pool),
      deliveries_(pool),
      guard_(config.webhooks.allowed_cidrs()),
      authenticate_(std::move(authenticate)) {}

void WebhookApi::mount(http::Server& server) {
  server.Post("/v1/webhooks", [this](const auto& req, auto& res) { create(req, res); });
  server.Get("/v1/webhooks", [this](const auto& req, auto& res) { list(req, res); });
  server.Get(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { get(req, res); });
  server.Patch(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { update(req, res); });
  server.Delete(R"(/v1/webhooks/([^/]+))", [this](const auto& req, auto& res) { remove(req, res); });
  server.Get(R"(/v1/webhooks/([^/]+)/attempts)", [this](const auto& req, auto& res) { attempts(req, res); });
  server.Post(R"(/v1/webhooks/([^/]+)/replay)", [this](const auto& req, auto& res) { replay(req, res); });
  server.Post(R"(/v1/events/([^/]+)/redeliver)", [this](const auto& req, auto& res) { redeliver(req, res); });
}

std::string WebhookApi::url_problem(const std::string& url) const {
  std::string host;
  if (auto why = url_syntax_problem(url, host); !why.empty()) return why;
  if (auto why = guard_.check_host(host)) return *why;
  return {};
}

void WebhookApi::create(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  WebhookCreateRequest in;
  try {
    in = parse_webhook_create(req.body, schemas_);
  } catch (const RequestRejected& e) {
    return reply_error(res, e.status(), e.what(), e.field());
  }
  if (auto why = url_problem(in.url); !why.empty()) return reply_error(res, 422, why, "url");
  WebhookEndpoint e;
  e.tenant_id = *tenant;
  e.url = in.url;
  e.events = in.events;
  e.ordering = in.ordering;
  e.enabled = in.enabled;
  e.secret = in.secret ? *in.secret : new_webhook_secret();
  auto created = store_.create(e);
  log::info("webhook.endpoint_created", {{"tenant", *tenant}, {"endpoint", created.id}, {"url", created.url}});
  reply(res, 201, to_json(created, true));
}

void WebhookApi::list(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  json items = json::array();
  for (const auto& e : store_.list(*tenant)) items.push_back(to_json(e, false));
  reply(res, 200, {{"data", items}});
}

void WebhookApi::get(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  auto e = store_.get(*tenant, req.matches[1]);
  if (!e) return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  reply(res, 200, to_json(*e, false));
}

void WebhookApi::update(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  WebhookUpdateRequest in;
  try {
    in = parse_webhook_update(req.body, schemas_);
  } catch (const RequestRejected& e) {
    return reply_error(res, e.status(), e.what(), e.field());
  }
  if (in.url)
    if (auto why = url_problem(*in.url); !why.empty()) return reply_error(res, 422, why, "url");
  WebhookEndpointChange ch;
  ch.rotation_window_s = config_.webhooks.rotation_window_s;
  ch.url = in.url;
  ch.events = in.events;
  ch.enabled = in.enabled;
  ch.ordering = in.ordering;
  const bool rotate = in.rotate_secret;
  if (rotate) ch.new_secret = in.secret ? *in.secret : new_webhook_secret();
  auto e = store_.update(*tenant, req.matches[1], ch);
  if (!e) return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  log::info("webhook.endpoint_updated", {{"tenant", *tenant}, {"endpoint", e->id}, {"rotated", rotate ? "true" : "false"}});
  reply(res, 200, to_json(*e, rotate));
}

void WebhookApi::remove(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  if (!store_.remove(*tenant, req.matches[1]))
    return reply_error(res, 404, "no webhook endpoint '" + std::string(req.matches[1]) + "' for this tenant", "id");
  log::info("webhook.endpoint_deleted", {{"tenant", *tenant}, {"endpoint", std::string(req.matches[1])}});
  res.status = 204;
}

void WebhookApi::attempts(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string id = req.matches[1];
  const auto limit = int_param(req, "limit", 50, 1, 1000);
  if (!limit) return reply_error(res, 422, "limit must be an integer from 1 to 1000", "limit");
  std::optional<std::string> status;
  if (req.has_param("status")) {
    status = req.get_param_value("status");
    if (*status != "succeeded" && *status != "failed" && *status != "dead_lettered")
      return reply_error(res, 422, "status must be succeeded, failed or dead_lettered", "status");
  }
  if (!store_.get(*tenant, id)) return reply_no_endpoint(res, id);
  json items = json::array();
  for (const auto& a : deliveries_.attempts(*tenant, id, *limit, status)) {
    items.push_back({{"at", a.at},
                     {"event_id", a.event_id},
                     {"event_type", a.event_type},
                     {"attempt", a.attempt},
                     {"outcome", a.outcome},
                     {"http_status", a.http_status ? json(*a.http_status) : json(nullptr)},
                     {"error", a.error ? json(*a.error) : json(nullptr)},
                     {"latency_ms", a.latency_ms},
                     {"response_excerpt", a.response_excerpt ? json(*a.response_excerpt) : json(nullptr)}});
  }
  log::info("webhook.attempts_listed", {{"tenant", *tenant},
                                        {"endpoint", id},
                                        {"status", status.value_or("any")},
                                        {"count", std::to_string(items.size())}});
  reply(res, 200, {{"data", items}});
}

void WebhookApi::replay(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string id = req.matches[1];
  std::string since;
  try {
    since = parse_replay_since(req.body, schemas_);
  } catch (const RequestRejected& e) {
    return reply_error(res, e.status(), e.what(), e.field());
  }
  auto endpoint = store_.get(*tenant, id);
  if (!endpoint) return reply_no_endpoint(res, id);
  if (!endpoint->enabled)
    return reply_error(res, 409, "webhook endpoint '" + id + "' is disabled: enable it first (PATCH {\"enabled\":true})");

  const int max = std::max(config_.webhooks.replay_max_events, 0);
  std::vector<StoredEvent> events;
  try {
    events = events_.since(*tenant, since, max + 1);
  } catch (const InvalidInput& e) {
    return reply_error(res, 422, e.what(), "since");
  }
  const bool truncated = events.size() > static_cast<std::size_t>(max);
  if (truncated) events.resize(max);
  std::vector<ScheduledDelivery> batch;  // oldest first: per_session ordering follows row order
  for (const auto& ev : events)
    if (subscribed(*endpoint, ev.type)) batch.push_back(delivery_of(*endpoint, ev));
  // An event still pending for this endpoint (parked or in flight) is not scheduled twice.
  const auto scheduled = deliveries_.schedule(batch);
  log::info("webhook.replay_scheduled", {{"tenant", *tenant},
                                         {"endpoint", id},
                                         {"since", since},
                                         {"read", std::to_string(events.size())},
                                         {"scheduled", std::to_string(scheduled)},
                                         {"already_pending", std::to_string(batch.size() - scheduled)},
                                         {"truncated", truncated ? "true" : "false"}});
  reply(res, 202, {{"scheduled", scheduled}, {"already_pending", batch.size() - scheduled}, {"truncated", truncated}});
}

void WebhookApi::redeliver(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string event_id = req.matches[1];
  auto event = events_.get(*tenant, event_id);  // a malformed id is simply not found
  if (!event) return reply_error(res, 404, "event not found", "event_id");
  std::vector<ScheduledDelivery> batch;
  json endpoints = json::array();
  for (const auto& e : store_.list(*tenant))
    if (e.enabled && subscribed(e, event->type)) {
      batch.push_back(delivery_of(e, *event));
      endpoints.push_back(e.id);
    }
  const auto scheduled = deliveries_.schedule(batch);
  log::info("webhook.redeliver_scheduled", {{"tenant", *tenant},
                                            {"event", event_id},
                                            {"event_type", event->type},
                                            {"scheduled", std::to_string(scheduled)},
                                            {"already_pending", std::to_string(batch.size() - scheduled)}});
  reply(res, 202, {{"scheduled", scheduled}, {"already_pending", batch.size() - scheduled}, {"endpoints", endpoints}});
}

}  // namespace sb
