#include "switchboard/producers/session_api.hpp"

#include <optional>

#include "json_reply.hpp"

#include <nlohmann/json.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/node_registry.hpp"

namespace sb {
using nlohmann::json;

namespace {

json opt_json(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

json view(const SessionRecord& s, const std::vector<SessionStatusChange>* history) {
  json out = {{"id", s.name},
              {"provider", s.provider},
              {"status", s.status},
              {"reason", opt_json(s.reason)},
              {"status_at", s.status_at},
              {"node", opt_json(s.node)},
              {"account", opt_json(s.account)},
              {"config", s.config},
              {"created_at", s.created_at},
              {"updated_at", s.updated_at}};
  if (s.raw_status) out["raw_status"] = *s.raw_status;
  if (s.phone_number_id) out["phone_number_id"] = *s.phone_number_id;
  if (s.deleting) out["deleting"] = true;
  if (history) {
    json h = json::array();
    for (const auto& c : *history) {
      json e = {{"status", c.status}, {"at", c.at}};
      if (c.reason) e["reason"] = *c.reason;
      if (c.raw_status) e["raw_status"] = *c.raw_status;
      h.push_back(e);
    }
    out["history"] = h;
  }
  return out;
}

// A pacing change's body, parsed and checked against `schema` and the policy's ranges; on bad
// input answers 400 (not JSON) or 422 (naming the field) and returns nothing.
std::optional<json> pacing_body(const http::Request& req, http::Response& res, const SchemaSet& schemas, const char* schema) {
  json body;
  try {
    body = parse_json(req.body);
  } catch (const InvalidInput& e) {
    reply_error(res, 400, e.what());
    return std::nullopt;
  }
  try {
    schemas.validate(schema, body);
    PacingPolicy::validate(body["pacing"]);
  } catch (const InvalidInput& e) {
    reply_error(res, 422, e.what(), e.field());
    return std::nullopt;
  }
  return body;
}
}  // namespace

bool SessionApi::is_secret_field(const std::string& name) {
  for (const char* s : {"access_token", "app_secret", "verify_token", "api_key", "webhook_hmac_key", "token", "password"})
    if (name == s) return true;
  return false;
}

SessionApi::SessionApi(const Config& config, pg::Pool& pool, const SchemaSet& schemas, CommandPublisher& publisher,
                       Authenticate authenticate)
    : config_(config),
      schemas_(schemas),
      store_(pool),
      pacing_(pool),
      secrets_(config.secrets.key),
      publisher_(publisher),
      authenticate_(std::move(authenticate)) {}

void SessionApi::mount(http::Server& server) {
  server.Post("/v1/sessions", [this](const auto& req, auto& res) { create(req, res); });
  server.Get("/v1/sessions", [this](const auto& req, auto& res) { list(req, res); });
  server.Get(R"(/v1/sessions/([^/]+))", [this](const auto& req, auto& res) { get(req, res); });
  server.Get(R"(/v1/sessions/([^/]+)/qr)", [this](const auto& req, auto& res) { qr(req, res); });
  server.Delete(R"(/v1/sessions/([^/]+))", [this](const auto& req, auto& res) { remove(req, res); });
  server.Post(R"(/v1/sessions/([^/]+)/start)", [this](const auto& req, auto& res) { act(req, res, "start"); });
  server.Post(R"(/v1/sessions/([^/]+)/stop)", [this](const auto& req, auto& res) { act(req, res, "stop"); });
  server.Post(R"(/v1/sessions/([^/]+)/restart)", [this](const auto& req, auto& res) { act(req, res, "restart"); });
  server.Post(R"(/v1/sessions/([^/]+)/logout)", [this](const auto& req, auto& res) { act(req, res, "logout"); });
  server.Post(R"(/v1/sessions/([^/]+)/resume)", [this](const auto& req, auto& res) { act(req, res, "resume"); });
  server.Patch(R"(/v1/sessions/([^/]+))", [this](const auto& req, auto& res) { update(req, res); });
  server.Get("/v1/pacing", [this](const auto& req, auto& res) { tenant_pacing(req, res); });
  server.Patch("/v1/pacing", [this](const auto& req, auto& res) { tenant_pacing(req, res); });
}

std::string SessionApi::publish(const std::string& tenant, const std::string& session, const std::string& action) {
  SessionCommand cmd{new_uuid_v7(), tenant, session, action, now_rfc3339()};
  publisher_.publish_and_wait(cmd);
  log::info("session.command_queued", {{"tenant", tenant}, {"session", session}, {"action", action}, {"command_id", cmd.id}});
  return cmd.id;
}

void SessionApi::create(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  json body;
  try {
    body = parse_json(req.body);
  } catch (const InvalidInput& e) {
    return reply_error(res, 400, e.what());
  }
  try {
    schemas_.validate("http/session_create_request", body);
  } catch (const InvalidInput& e) {
    return reply_error(res, 422, e.what(), e.field());
  }
  const json pacing = body.value("pacing", json::object());
  try {
    PacingPolicy::validate(pacing);
  } catch (const InvalidInput& e) {
    return reply_error(res, 422, e.what(), e.field());
  }
  NewSession s;
  s.tenant_id = *tenant;
  s.name = body["id"];
  s.provider = body["provider"];
  const json config = body.value("config", json::object());
  json secret = json::object();
  for (const auto& [k, v] : config.items()) {
    if (is_secret_field(k)) secret[k] = v;
    else s.config[k] = v;
  }
  if (!secret.empty()) {
    if (!secrets_.usable())
      return reply_error(res, 503, "this deployment cannot store credentials: secrets.key is not configured");
    s.secrets = seal_session_secrets(secrets_, *tenant, s.name, secret);
  }
  std::function<void(pqxx::work&, NewSession&)> place;
  if (s.provider == "engine") {
    std::optional<std::string> pinned;
    if (config.contains("node")) pinned = config["node"].get<std::string>();
    else if (!config.contains("group") && !config_.engine.default_node.empty()) pinned = config_.engine.default_node;
    const std::string group = config.value("group", std::string());
    s.engine_name = engine_session_name(*tenant, s.name);
    // Created to start: its capacity slot is taken now, in the placing transaction (so creates
    // at once can't overfill a node before their starts run). Created stopped: at its start.
    s.holds_slot = body.value("start", true);
    // The node is chosen in the creating transaction, with the candidate nodes locked: two
    // creates at once never overfill a node.
    place = [pinned, group](pqxx::work& tx, NewSession& n) {
      auto p = SessionPlacement::choose(tx, group, pinned);
      n.node = p.node;
      n.config["node"] = p.node;
      n.generation = p.generation;
      n.storage_group = p.storage_group;
    };
  } else if (s.provider == "cloud_api") {
    s.phone_number_id = config["phone_number_id"].get<std::string>();
  } else {
    s.status = "STOPPED";
  }
  try {
    store_.create(s, place);
  } catch (const Conflict& e) {
    return reply_error(res, 409, e.what(), "id");
  } catch (const NotFound& e) {
    return reply_error(res, 422, e.what(), "config.node");
  } catch (const InvalidInput& e) {
    return reply_error(res, 422, e.what(), e.field());
  } catch (const NoCapacity& e) {
    ++no_capacity_;
    log::warn("session.no_capacity", {{"tenant", *tenant}, {"session", s.name}, {"detail", e.what()}});
    res.set_header("Retry-After", std::to_string(config_.intake.retry_after_s * 15));
    return reply(res, 503, {{"error", std::string("no_capacity: ") + e.what() + "; add engine nodes or capacity, or retry later"},
                            {"reason", "no_capacity"}});
  }
  if (!pacing.empty()) pacing_.set_session(*tenant, s.name, pacing);
  log::info("session.created", {{"tenant", *tenant}, {"session", s.name}, {"provider", s.provider}});
  json out = with_pacing(view(*store_.get(*tenant, s.name), nullptr), *tenant, s.name, false);
  if (body.value("start", true)) {
    try {
      out["start_command_id"] = publish(*tenant, s.name, "start");
    } catch (const Error& e) {
      // Created, not started: say so, so the client retries the start rather than the create.
      log::warn("session.start_not_queued", {{"tenant", *tenant}, {"session", s.name}, {"detail", e.what()}});
      res.set_header("Retry-After", std::to_string(config_.intake.retry_after_s));
      return reply_error(res, 503, "session created, but its start could not be queued (Kafka unavailable): "
                                   "retry POST /v1/sessions/" + s.name + "/start");
    }
  }
  res.set_header("Location", "/v1/sessions/" + s.name);
  reply(res, 201, out);
}

void SessionApi::list(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  json items = json::array();
  for (const auto& s : store_.list(*tenant)) items.push_back(view(s, nullptr));
  reply(res, 200, {{"sessions", items}});
}

void SessionApi::get(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string name = req.matches[1];
  auto s = store_.get(*tenant, name);  // another tenant's session is simply not found
  if (!s) return reply_error(res, 404, "no session '" + name + "' for this tenant", "id");
  const auto history = store_.history(*tenant, name);
  reply(res, 200, with_pacing(view(*s, &history), *tenant, name, true));
}

void SessionApi::act(const http::Request& req, http::Response& res, const std::string& action) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string name = req.matches[1];
  auto s = store_.get(*tenant, name);
  if (!s) return reply_error(res, 404, "no session '" + name + "' for this tenant", "id");
  if (s->deleting) return reply_error(res, 409, "session '" + name + "' is being deleted", "id");
  if (action == "resume" && s->status != "PAUSED")
    return reply_error(res, 409, "session '" + name + "' is " + s->status + ": only a PAUSED session resumes", "id");
  reply(res, 202, {{"id", name}, {"action", action}, {"command_id", publish(*tenant, name, action)}});
}

void SessionApi::remove(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string name = req.matches[1];
  if (!store_.get(*tenant, name)) return reply_error(res, 404, "no session '" + name + "' for this tenant", "id");
  // Marked first: from now on sends are refused; the worker stops it on its provider, then
  // removes the row. A lost publish leaves the mark, and a repeated DELETE publishes again.
  store_.mark_deleting(*tenant, name);
  reply(res, 202, {{"id", name}, {"action", "delete"}, {"command_id", publish(*tenant, name, "delete")}});
}

// The session's pacing: its own overrides, when it resumes if PAUSED and (one session) the
// policy in force.
json SessionApi::with_pacing(json out, const std::string& tenant, const std::string& name, bool effective) {
  auto found = pacing_.load(std::vector<PacingStore::Key>{PacingStore::Key{tenant, name}});
  if (found.empty()) return out;
  const auto& p = found.begin()->second;
  out["pacing"] = p.session_overrides;
  if (effective) out["pacing_effective"] = p.effective(PacingPolicy::from_config(config_.pacing)).to_json();
  if (out["status"] == "PAUSED")
    if (auto until = pacing_.paused_until(tenant, name)) out["paused_until"] = *until;
  return out;
}

void SessionApi::update(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string name = req.matches[1];
  auto body = pacing_body(req, res, schemas_, "http/session_update_request");
  if (!body) return;
  if (!pacing_.set_session(*tenant, name, (*body)["pacing"])) return reply_error(res, 404, "no session '" + name + "' for this tenant", "id");
  log::info("session.pacing_set", {{"tenant", *tenant}, {"session", name}, {"pacing", (*body)["pacing"].dump()}});
  reply(res, 200, with_pacing(view(*store_.get(*tenant, name), nullptr), *tenant, name, true));
}

void SessionApi::tenant_pacing(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  if (req.method == "PATCH") {
    auto body = pacing_body(req, res, schemas_, "http/tenant_pacing");
    if (!body) return;
    pacing_.set_tenant(*tenant, (*body)["pacing"]);
    log::info("tenant.pacing_set", {{"tenant", *tenant}, {"pacing", (*body)["pacing"].dump()}});
  }
  reply(res, 200, {{"pacing", pacing_.tenant(*tenant)}, {"defaults", PacingPolicy::from_config(config_.pacing).to_json()}});
}

void SessionApi::qr(const http::Request& req, http::Response& res) {
  auto tenant = authenticate_(req, res);
  if (!tenant) return;
  const std::string name = req.matches[1];
  auto s = store_.get(*tenant, name);
  if (!s) return reply_error(res, 404, "no session '" + name + "' for this tenant", "id");
  if (s->status != "SCAN_QR_CODE" || !s->qr_value)
    return reply_error(res, 409, "session '" + name + "' is " + s->status +
                                     ": a QR code is shown only while it waits to be paired (SCAN_QR_CODE)");
  reply(res, 200, {{"value", *s->qr_value}, {"mimetype", "image/png"}, {"data", s->qr_png.value_or("")}});
}

}  // namespace sb
