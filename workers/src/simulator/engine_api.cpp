#include "engine_api.hpp"

#include "qr_png.hpp"
#include "switchboard/core/base64.hpp"
#include "switchboard/core/hmac.hpp"
#include "switchboard/core/log.hpp"

namespace sb::sim {

namespace {

const char* kStatusMismatch = "Session status is not as expected. Try again later or restart the session.";

// A value shaped like WhatsApp Web's pairing ref ("2@<ref>,<public key>,<identity key>,<adv secret>").
std::string new_qr_value() {
  return "2@" + random_alnum(56) + "," + random_alnum(43) + "=," + random_alnum(43) + "=," + random_alnum(43) + "=";
}

http::Response status_mismatch(const std::string& session, const std::string& status, const char* expected) {
  return reply(422, {{"error", kStatusMismatch}, {"session", session}, {"status", status}, {"expected", json::array({expected})}});
}

http::Response no_session(const std::string& name) {
  return reply(404, {{"error", "Session \"" + name + "\" does not exist"}, {"session", name}});
}

// Checks config.webhooks the way WAHA's validation would (400 with what's wrong).
std::optional<std::string> invalid_config(const json& config) {
  if (!config.is_object()) return "'config' must be an object";
  auto hooks = config.find("webhooks");
  if (hooks == config.end() || hooks->is_null()) return std::nullopt;
  if (!hooks->is_array()) return "'config.webhooks' must be an array";
  for (const auto& w : *hooks) {
    if (!w.is_object() || !string_field(w, "url")) return "every 'config.webhooks[]' needs a string 'url'";
    auto events = w.find("events");
    if (events != w.end()) {
      if (!events->is_array()) return "'config.webhooks[].events' must be an array of event names";
      for (const auto& e : *events)
        if (!e.is_string()) return "'config.webhooks[].events' must be an array of event names";
    }
    auto hmac = w.find("hmac");
    if (hmac != w.end() && !hmac->is_null() && (!hmac->is_object() || (hmac->contains("key") && !(*hmac)["key"].is_string() && !(*hmac)["key"].is_null())))
      return "'config.webhooks[].hmac' must be {\"key\": \"<secret>\"}";
  }
  return std::nullopt;
}

bool subscribed(const json& webhook, const std::string& event) {
  auto events = webhook.find("events");
  if (events == webhook.end() || !events->is_array()) return true;  // no list: everything
  for (const auto& e : *events)
    if (e.is_string() && (e.get<std::string>() == event || e.get<std::string>() == "*")) return true;
  return false;
}

}  // namespace

bool EngineApi::running(const std::string& status) {
  return status == "STARTING" || status == "SCAN_QR_CODE" || status == "WORKING";
}

void EngineApi::routes() {
  // Every /api/* handler is wrapped: with simulator.engine.api_key set, X-Api-Key must match.
  auto guarded = [this](void (EngineApi::*handler)(const http::Request&, const http::Responder&)) {
    return [this, handler](const http::Request& req, http::Responder respond) {
      const std::string& key = ctx_.config.engine.api_key;
      if (!key.empty() && !equal_constant_time(req.get_header_value("X-Api-Key"), key))
        return respond(reply(401, {{"error", "Unauthorized: a valid X-Api-Key header is required"}}));
      (this->*handler)(req, respond);
    };
  };
  server_.async_route("POST", "/api/sessions", guarded(&EngineApi::create));
  server_.async_route("GET", "/api/sessions", guarded(&EngineApi::list));
  server_.async_route("GET", "/api/sessions/([^/]+)", guarded(&EngineApi::get));
  server_.async_route("DELETE", "/api/sessions/([^/]+)", guarded(&EngineApi::remove));
  server_.async_route("POST", "/api/sessions/([^/]+)/(start|stop|restart|logout)", guarded(&EngineApi::action));
  server_.async_route("GET", "/api/([^/]+)/auth/qr", guarded(&EngineApi::qr));
  server_.async_route("POST", "/api/sendText", guarded(&EngineApi::send_text));
}

json EngineApi::to_json(const Session& s) const {
  return {{"name", s.name},
          {"status", s.status},
          {"config", s.config},
          {"me", s.me ? json{{"id", s.me->id()}, {"pushName", s.me->push_name}} : json(nullptr)},
          {"engine", {{"engine", "SIMULATOR"}}}};
}

// ------------------------------------------------------------------ handlers

bool EngineApi::stale(const http::Request& req, const std::string& session, const http::Responder& respond, uint64_t* generation) {
  const std::string header = req.get_header_value("X-Switchboard-Generation");
  if (header.empty() || !all_digits(header) || header.size() > 18) return false;  // not fenced (real clients)
  const uint64_t g = std::stoull(header);
  if (const uint64_t newest = ctx_.auth.admit(session, g)) {
    log::info("simulator.engine.stale_generation", {{"session", session}, {"generation", header}, {"newest", std::to_string(newest)}});
    respond(reply(409, {{"error", "stale placement: generation " + header + " is older than " + std::to_string(newest) +
                                      ", which the session has been placed with since"},
                        {"session", session},
                        {"stale_generation", g},
                        {"generation", newest}}));
    return true;
  }
  if (generation) *generation = g;
  return false;
}

void EngineApi::create(const http::Request& req, const http::Responder& respond) {
  std::string error;
  auto body = parse_object(req.body, &error);
  if (!body) return respond(reply(400, {{"error", error}}));
  if (body->contains("name") && !(*body)["name"].is_string()) return respond(reply(400, {{"error", "'name' must be a string"}}));
  const std::string name = body->value("name", std::string("default"));  // WAHA's default name
  if (name.empty() || name.find('/') != std::string::npos)
    return respond(reply(400, {{"error", "'name' must be non-empty and must not contain '/'"}}));
  json config = body->contains("config") && !(*body)["config"].is_null() ? (*body)["config"] : json::object();
  if (auto bad = invalid_config(config)) return respond(reply(400, {{"error", *bad}}));
  if (body->contains("start") && !(*body)["start"].is_boolean()) return respond(reply(400, {{"error", "'start' must be a boolean"}}));
  const bool start_now = body->value("start", true);  // WAHA starts a new session unless told not to
  uint64_t generation = 0;
  if (stale(req, name, respond, &generation)) return;

  std::lock_guard lock(mu_);
  if (sessions_.count(name)) return respond(reply(422, {{"error", "Session '" + name + "' already exists"}, {"session", name}}));
  Session& s = sessions_[name];
  s.name = name;
  s.generation = generation;
  s.config = std::move(config);
  s.me = ctx_.auth.load(name);  // paired before (maybe on another node): its account is known
  log::info("simulator.engine.session_created", {{"session", name}});
  if (start_now) start(s);
  respond(reply(201, to_json(s)));
}

void EngineApi::action(const http::Request& req, const http::Responder& respond) {
  const std::string name = percent_decode(req.matches[1]);
  const std::string& op = req.matches[2];
  uint64_t generation = 0;
  if (stale(req, name, respond, &generation)) return;
  std::lock_guard lock(mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) return respond(no_session(name));
  Session& s = it->second;
  s.generation = std::max(s.generation, generation);
  if (op == "start") {
    if (!running(s.status)) start(s);
  } else if (op == "stop") {
    if (s.status != "STOPPED") stop(s);
  } else if (op == "restart") {
    if (s.status != "STOPPED") stop(s);
    start(s);
  } else {  // logout: the pairing is gone, here and for every node sharing the auth store
    ctx_.auth.erase(name);
    s.me.reset();
    if (s.status != "STOPPED") stop(s);
  }
  respond(reply(201, to_json(s)));
}

void EngineApi::remove(const http::Request& req, const http::Responder& respond) {
  const std::string name = percent_decode(req.matches[1]);
  if (stale(req, name, respond, nullptr)) return;
  std::lock_guard lock(mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) return respond(no_session(name));
  if (it->second.status != "STOPPED") stop(it->second);
  ctx_.auth.erase(name);
  json last = to_json(it->second);
  sessions_.erase(it);
  log::info("simulator.engine.session_deleted", {{"session", name}});
  respond(reply(200, last));
}

void EngineApi::list(const http::Request& req, const http::Responder& respond) {
  const bool all = req.get_param_value("all") == "true";  // without it, STOPPED sessions are left out
  json out = json::array();
  std::lock_guard lock(mu_);
  for (const auto& [name, s] : sessions_)
    if (all || s.status != "STOPPED") out.push_back(to_json(s));
  respond(reply(200, out));
}

void EngineApi::get(const http::Request& req, const http::Responder& respond) {
  const std::string name = percent_decode(req.matches[1]);
  std::lock_guard lock(mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) return respond(no_session(name));
  respond(reply(200, to_json(it->second)));
}

void EngineApi::qr(const http::Request& req, const http::Responder& respond) {
  const std::string name = percent_decode(req.matches[1]);
  std::string value;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(name);
    if (it == sessions_.end()) return respond(no_session(name));
    if (it->second.status != "SCAN_QR_CODE") return respond(status_mismatch(name, it->second.status, "SCAN_QR_CODE"));
    value = it->second.qr;
  }
  if (req.get_param_value("format") == "raw") return respond(reply(200, {{"value", value}}));
  const std::string png = qr_png(value);
  if (req.get_header_value("Accept").find("application/json") != std::string::npos)
    return respond(reply(200, {{"mimetype", "image/png"}, {"data", base64_encode(png)}}));
  http::Response res;
  res.status = 200;
  res.set_content(png, "image/png");
  respond(std::move(res));
}

void EngineApi::send_text(const http::Request& req, const http::Responder& respond) {
  std::string error;
  auto body = parse_object(req.body, &error);
  if (!body) return respond(reply(400, {{"error", error}}));
  auto session = string_field(*body, "session");
  auto chat_id = string_field(*body, "chatId");
  auto text = string_field(*body, "text");
  if (!session || !chat_id || !text) return respond(reply(400, {{"error", "'session', 'chatId' and 'text' must be strings"}}));
  const auto at = chat_id->find('@');
  if (at == std::string::npos || chat_id->substr(at) != "@c.us" || !all_digits(chat_id->substr(0, at)))
    return respond(reply(400, {{"error", "'chatId' must be '<digits>@c.us'"}, {"chatId", *chat_id}}));
  if (stale(req, *session, respond, nullptr)) return;

  Account me;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(*session);
    if (it == sessions_.end()) return respond(no_session(*session));
    if (it->second.status != "WORKING" || !it->second.me) return respond(status_mismatch(*session, it->second.status, "WORKING"));
    me = *it->second.me;
    if (auto lock = reach_out_locks_.find(*session); lock != reach_out_locks_.end() && lock->second > 0) {
      if (--lock->second == 0) reach_out_locks_.erase(lock);
      log::info("simulator.engine.reach_out_lock", {{"session", *session}});
      return respond(reply(500, {{"statusCode", 500}, {"exception", {{"message", "2 UNKNOWN: server returned error 463"}}},
                                 {"error", "Internal Server Error"}}));
    }
  }
  const int delay_ms = send_latency_ms(ctx_.config) + ctx_.hang_left_ms();
  auto finish = [this, respond, session = *session, me, chat_id = *chat_id, text = *text] {
    if (simulated_failure(ctx_.config)) return respond(reply(500, {{"error", "simulated failure"}}));
    sent(session, me, chat_id, text, respond);
  };
  if (delay_ms > 0) server_.after(std::chrono::milliseconds(delay_ms), std::move(finish));
  else finish();
}

void EngineApi::sent(const std::string& session, const Account& me, const std::string& chat_id, const std::string& text,
                     const http::Responder& respond) {
  const std::string id = "true_" + chat_id + "_" + random_hex(20, true);
  ctx_.sends.record({"engine", "session", session, chat_id, text, id, now_ms()});
  log::debug("simulator.engine.sent", {{"session", session}, {"provider_message_id", id}});
  auto answer = reply(201, {{"id", id}, {"timestamp", now_s()}, {"from", me.id()}, {"to", chat_id}, {"body", text}, {"fromMe", true}});
  if (const int late = ctx_.config.receipts_before_reply_ms; late > 0)
    server_.after(std::chrono::milliseconds(late), [respond, answer = std::move(answer)]() mutable { respond(std::move(answer)); });
  else
    respond(std::move(answer));

  const json base = {{"id", id}, {"from", me.id()}, {"to", chat_id}, {"fromMe", true}};
  ack(session, base, 1, "SERVER");
  const int delivered = ctx_.config.delivered_delay_ms;
  const int read = ctx_.config.read_delay_ms;
  if (delivered > 0) server_.after(std::chrono::milliseconds(delivered), [this, session, base] { ack(session, base, 2, "DEVICE"); });
  if (read > 0) server_.after(std::chrono::milliseconds(delivered + read), [this, session, base] { ack(session, base, 3, "READ"); });
}

void EngineApi::ack(const std::string& session, const json& base, int level, const char* name) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end() || it->second.status != "WORKING") return;  // a stopped engine reports nothing
  json payload = base;
  payload["ack"] = level;
  payload["ackName"] = name;
  emit(it->second, "message.ack", payload);
}

// ------------------------------------------------------------------ transitions

void EngineApi::set_status(Session& s, const std::string& status, bool emit_even_if_same) {
  const std::string previous = s.status;
  if (previous == status && !emit_even_if_same) return;
  s.status = status;
  if (running(status) && !running(previous)) ctx_.lifetimes.opened(s.name, s.generation);
  if (!running(status) && running(previous)) ctx_.lifetimes.closed(s.name);
  log::info("simulator.engine.status", {{"session", s.name}, {"status", status}, {"previous", previous}});
  emit(s, "session.status", {{"status", status}});
}

void EngineApi::schedule(const Session& s, int delay_ms, void (EngineApi::*step)(Session&)) {
  server_.after(std::chrono::milliseconds(delay_ms), [this, name = s.name, epoch = s.epoch, step] {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(name);
    if (it != sessions_.end() && it->second.epoch == epoch) (this->*step)(it->second);
  });
}

void EngineApi::start(Session& s) {
  s.epoch = ++epochs_;
  set_status(s, "STARTING");
  schedule(s, ctx_.config.engine.start_delay_ms, &EngineApi::finish_start);
}

void EngineApi::stop(Session& s, const std::string& status) {
  s.epoch = ++epochs_;  // cancels a pending start or QR rotation
  s.qr.clear();
  set_status(s, status);
}

void EngineApi::finish_start(Session& s) {
  if (auto auth = ctx_.auth.load(s.name)) {
    s.me = *auth;
    set_status(s, banned_.count(auth->digits) ? "FAILED" : "WORKING");
  } else {
    show_qr(s);
  }
}

void EngineApi::show_qr(Session& s) {
  s.me.reset();
  s.qr = new_qr_value();
  set_status(s, "SCAN_QR_CODE", /*emit_even_if_same=*/true);
  schedule(s, ctx_.config.engine.qr_rotate_ms, &EngineApi::rotate_qr);
}

void EngineApi::rotate_qr(Session& s) {
  if (s.status == "SCAN_QR_CODE") show_qr(s);  // a new value, re-announced like WAHA does
}

void EngineApi::emit(const Session& s, const std::string& event, const json& payload) {
  auto hooks = s.config.find("webhooks");
  if (hooks == s.config.end() || !hooks->is_array() || hooks->empty()) return;
  const int64_t ts = now_ms();
  const json envelope = {{"id", "evt_" + ulid_like()},
                         {"timestamp", ts},
                         {"event", event},
                         {"session", s.name},
                         {"me", s.me ? json{{"id", s.me->id()}, {"pushName", s.me->push_name}} : json(nullptr)},
                         {"payload", payload},
                         {"engine", "SIMULATOR"}};
  const std::string body = envelope.dump();
  for (const auto& w : *hooks) {
    if (!subscribed(w, event)) continue;
    Callback cb;
    cb.url = w["url"].get<std::string>();
    cb.body = body;
    cb.what = event;
    cb.headers = {{"Content-Type", "application/json"},
                  {"X-Webhook-Request-Id", ulid_like()},
                  {"X-Webhook-Timestamp", std::to_string(ts)}};
    auto hmac = w.find("hmac");
    if (hmac != w.end() && hmac->is_object() && hmac->contains("key") && (*hmac)["key"].is_string() &&
        !(*hmac)["key"].get<std::string>().empty()) {
      cb.headers.emplace_back("X-Webhook-Hmac", hmac_hex(HmacDigest::Sha512, (*hmac)["key"].get<std::string>(), body));
      cb.headers.emplace_back("X-Webhook-Hmac-Algorithm", "sha512");
    }
    ctx_.callbacks.enqueue("engine/" + s.name, std::move(cb));  // in order per session
  }
}

// ------------------------------------------------------------------ control API

EngineApi::Session* EngineApi::find_by_account(const std::string& digits) {
  for (auto& [name, s] : sessions_)
    if (s.me && s.me->digits == digits) return &s;
  return nullptr;
}

Account EngineApi::new_account() {
  while (true) {
    std::string digits = "1555" + random_digits(7);
    if (!find_by_account(digits)) return {digits, "Sim " + digits.substr(digits.size() - 4)};
  }
}

std::optional<json> EngineApi::scan(const std::string& qr) {
  std::lock_guard lock(mu_);
  for (auto& [name, s] : sessions_) {
    if (s.status != "SCAN_QR_CODE" || s.qr != qr) continue;
    Account account = new_account();
    ctx_.auth.save(name, account);
    s.me = account;
    s.qr.clear();
    s.epoch = ++epochs_;  // ends the QR rotation
    set_status(s, "WORKING");
    return json{{"session", name}, {"account", account.digits}};
  }
  return std::nullopt;
}

std::optional<json> EngineApi::inbound(const std::string& to, const std::string& from, const std::string& text, bool* not_working) {
  std::lock_guard lock(mu_);
  Session* s = find_by_account(to);
  if (!s) return std::nullopt;
  if (s->status != "WORKING") {
    *not_working = true;
    return std::nullopt;
  }
  const std::string id = "false_" + from + "@c.us_" + random_hex(20, true);
  emit(*s, "message", {{"id", id}, {"timestamp", now_s()}, {"from", from + "@c.us"}, {"to", s->me->id()},
                       {"body", text}, {"fromMe", false}, {"hasMedia", false}});
  return json{{"session", s->name}, {"id", id}};
}

std::optional<json> EngineApi::disconnect(const std::string& account) {
  std::lock_guard lock(mu_);
  Session* s = find_by_account(account);
  if (!s) return std::nullopt;
  // The phone unlinked the device: auth gone; a running session starts over and shows a QR.
  ctx_.auth.erase(s->name);
  s->me.reset();
  if (running(s->status)) {
    s->epoch = ++epochs_;
    s->qr.clear();
    set_status(*s, "STARTING");
    schedule(*s, ctx_.config.engine.start_delay_ms, &EngineApi::finish_start);
  }
  return json{{"session", s->name}};
}

std::optional<json> EngineApi::reconnect(const std::string& account) {
  std::lock_guard lock(mu_);
  Session* s = find_by_account(account);
  if (!s || !running(s->status)) return std::nullopt;
  // The link dropped and comes back on its own: auth kept, so it is WORKING again after a start.
  s->epoch = ++epochs_;
  set_status(*s, "STARTING");
  schedule(*s, ctx_.config.engine.start_delay_ms, &EngineApi::finish_start);
  return json{{"session", s->name}};
}

std::optional<json> EngineApi::ban(const std::string& account) {
  std::lock_guard lock(mu_);
  Session* s = find_by_account(account);
  if (!s) return std::nullopt;
  banned_.insert(account);
  stop(*s, "FAILED");
  return json{{"session", s->name}};
}

std::optional<json> EngineApi::reach_out_lock(const std::string& account, int sends) {
  std::lock_guard lock(mu_);
  Session* s = find_by_account(account);
  if (!s) return std::nullopt;
  if (sends > 0) reach_out_locks_[s->name] = sends;
  else reach_out_locks_.erase(s->name);
  return json{{"session", s->name}, {"sends", sends}};
}

}  // namespace sb::sim
