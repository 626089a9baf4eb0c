#include "control_api.hpp"

#include "switchboard/core/log.hpp"

namespace sb::sim {

std::optional<json> ControlApi::fields(const http::Request& req, const http::Responder& respond,
                                       std::initializer_list<const char*> required) {
  std::string error;
  auto body = parse_object(req.body, &error);
  if (!body) {
    respond(reply(400, {{"error", error}}));
    return std::nullopt;
  }
  for (const char* f : required) {
    auto v = string_field(*body, f);
    if (!v || v->empty()) {
      respond(reply(400, {{"error", std::string("'") + f + "' must be a non-empty string"}}));
      return std::nullopt;
    }
  }
  return body;
}

void ControlApi::routes() {
  server_.async_route("POST", "/sim/scan", [this](const http::Request& req, http::Responder respond) {
    auto body = fields(req, respond, {"qr"});
    if (!body) return;
    auto paired = engine_.scan((*body)["qr"].get<std::string>());
    if (!paired) return respond(reply(404, {{"error", "no session is showing this QR value (expired, or already scanned?)"}}));
    log::info("simulator.scanned", {{"session", (*paired)["session"].get<std::string>()}, {"account", (*paired)["account"].get<std::string>()}});
    respond(reply(200, *paired));
  });
  server_.async_route("POST", "/sim/inbound", [this](const http::Request& req, http::Responder respond) { inbound(req, respond); });
  server_.async_route("POST", "/sim/disconnect", [this](const http::Request& req, http::Responder respond) {
    auto body = fields(req, respond, {"account"});
    if (!body) return;
    auto done = engine_.disconnect((*body)["account"].get<std::string>());
    if (!done) return respond(reply(404, {{"error", "no engine session has account '" + (*body)["account"].get<std::string>() + "'"}}));
    respond(reply(200, *done));
  });
  server_.async_route("POST", "/sim/reconnect", [this](const http::Request& req, http::Responder respond) {
    auto body = fields(req, respond, {"account"});
    if (!body) return;
    auto done = engine_.reconnect((*body)["account"].get<std::string>());
    if (!done) return respond(reply(404, {{"error", "no running engine session has account '" + (*body)["account"].get<std::string>() + "'"}}));
    respond(reply(200, *done));
  });
  server_.async_route("POST", "/sim/ban", [this](const http::Request& req, http::Responder respond) { ban(req, respond); });
  server_.async_route("POST", "/sim/reach_out_lock", [this](const http::Request& req, http::Responder respond) {
    auto body = fields(req, respond, {"account"});
    if (!body) return;
    const auto sends = body->find("sends");
    if (sends == body->end() || !sends->is_number_integer() || sends->get<int64_t>() < 0 || sends->get<int64_t>() > 1000000)
      return respond(reply(400, {{"error", "'sends' must be an integer from 0 to 1000000 (how many sendText calls answer error 463)"}}));
    auto done = engine_.reach_out_lock((*body)["account"].get<std::string>(), sends->get<int>());
    if (!done) return respond(reply(404, {{"error", "no engine session has account '" + (*body)["account"].get<std::string>() + "'"}}));
    respond(reply(200, *done));
  });
  server_.async_route("POST", "/sim/unban", [this](const http::Request& req, http::Responder respond) {
    auto body = fields(req, respond, {"account"});
    if (!body) return;
    auto done = cloud_.ban((*body)["account"].get<std::string>(), 0);  // code 0: sends go through again
    if (!done) return respond(reply(404, {{"error", "no Cloud API number has account '" + (*body)["account"].get<std::string>() + "'"}}));
    (*done)["shape"] = "cloud_api";
    respond(reply(200, *done));
  });
  server_.async_route("GET", "/sim/log", [this](const http::Request& req, http::Responder respond) {
    if (req.has_param("session")) return respond(reply(200, ctx_.sends.to_json("session", req.get_param_value("session"))));
    if (req.has_param("phone_number_id"))
      return respond(reply(200, ctx_.sends.to_json("phone_number_id", req.get_param_value("phone_number_id"))));
    respond(reply(200, ctx_.sends.to_json("", "")));
  });
  server_.async_route("GET", "/sim/sessions/log", [this](const http::Request&, http::Responder respond) {
    respond(reply(200, ctx_.lifetimes.to_json()));
  });
  server_.async_route("POST", "/sim/hang", [this](const http::Request& req, http::Responder respond) {
    std::string error;
    auto body = parse_object(req.body, &error);
    if (!body) return respond(reply(400, {{"error", error}}));
    auto ms = body->find("for_ms");
    if (ms == body->end() || !ms->is_number_integer() || ms->get<int64_t>() < 0 || ms->get<int64_t>() > 3600000)
      return respond(reply(400, {{"error", "'for_ms' must be an integer from 0 to 3600000"}}));
    const int64_t until = ms->get<int64_t>() == 0 ? 0 : now_ms() + ms->get<int64_t>();
    ctx_.hang_until_ms = until;
    log::warn("simulator.hang", {{"for_ms", std::to_string(ms->get<int64_t>())}});
    respond(reply(200, {{"hang_until_ms", until}}));
  });
  server_.async_route("POST", "/sim/cloud_api/verify", [this](const http::Request&, http::Responder respond) { cloud_.verify(respond); });
}

void ControlApi::inbound(const http::Request& req, const http::Responder& respond) {
  auto body = fields(req, respond, {"to", "from", "text"});
  if (!body) return;
  const std::string to = (*body)["to"], from = (*body)["from"], text = (*body)["text"];
  if (!all_digits(from)) return respond(reply(400, {{"error", "'from' must be a phone number, digits only"}}));
  bool not_working = false;
  if (auto done = engine_.inbound(to, from, text, &not_working)) {
    (*done)["shape"] = "engine";
    return respond(reply(200, *done));
  }
  if (not_working) return respond(reply(409, {{"error", "the engine session with account '" + to + "' is not WORKING"}}));
  if (auto done = cloud_.inbound(to, from, text)) {
    (*done)["shape"] = "cloud_api";
    return respond(reply(200, *done));
  }
  respond(reply(404, {{"error", "no engine session or Cloud API number has account '" + to + "'"}}));
}

void ControlApi::ban(const http::Request& req, const http::Responder& respond) {
  auto body = fields(req, respond, {"account"});
  if (!body) return;
  const std::string account = (*body)["account"];
  int code = 131048;
  if (body->contains("code")) {
    if (!(*body)["code"].is_number_integer() || (*body)["code"].get<int>() <= 0)
      return respond(reply(400, {{"error", "'code' must be a positive integer (a Graph error code, e.g. 131048 or 368)"}}));
    code = (*body)["code"].get<int>();
  }
  if (auto done = engine_.ban(account)) {
    (*done)["shape"] = "engine";
    return respond(reply(200, *done));
  }
  if (auto done = cloud_.ban(account, code)) {
    (*done)["shape"] = "cloud_api";
    return respond(reply(200, *done));
  }
  respond(reply(404, {{"error", "no engine session or Cloud API number has account '" + account + "'"}}));
}

}  // namespace sb::sim
