#include "cloud_api.hpp"

#include "switchboard/core/hmac.hpp"
#include "switchboard/core/log.hpp"

namespace sb::sim {

namespace {

const char* kVersion = R"(v[0-9]+\.[0-9]+)";

std::string new_wamid() { return "wamid.HBgL" + random_alnum(40); }

const char* message_for(int code) {
  switch (code) {
    case 131048: return "(#131048) Spam rate limit hit";
    case 131026: return "(#131026) Message undeliverable";
    case 368: return "(#368) Temporarily blocked for policies violations";
    case 131056: return "(#131056) (Business Account, Consumer Account) pair rate limit hit";
    case 130429: return "(#130429) Rate limit hit";
    default: return "Simulated error";
  }
}

}  // namespace

http::Response graph_error(int http_status, int code, const std::string& message, const std::string& details) {
  json error = {{"message", message}, {"type", "OAuthException"}, {"code", code}, {"fbtrace_id", "A" + random_alnum(22)}};
  if (!details.empty()) error["error_data"] = {{"messaging_product", "whatsapp"}, {"details", details}};
  return reply(http_status, {{"error", error}});
}

std::string CloudApi::display_number(const std::string& phone_number_id) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across runs and nodes
  for (unsigned char c : phone_number_id) h = (h ^ c) * 1099511628211ull;
  std::string digits = std::to_string(h % 10000000);
  return "1556" + std::string(7 - digits.size(), '0') + digits;
}

void CloudApi::routes() {
  server_.async_route("POST", std::string("/(") + kVersion + ")/([^/]+)/messages",
                      [this](const http::Request& req, http::Responder respond) { send(req, respond); });
  server_.async_route("GET", std::string("/(") + kVersion + ")/([^/]+)",
                      [this](const http::Request& req, http::Responder respond) { describe(req, respond); });
}

bool CloudApi::authorized(const http::Request& req, const http::Responder& respond) const {
  const std::string header = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  const std::string token = header.rfind(prefix, 0) == 0 ? header.substr(prefix.size()) : "";
  const std::string& expected = ctx_.config.cloud_api.access_token;
  if (!token.empty() && (expected.empty() || equal_constant_time(token, expected))) return true;
  respond(graph_error(401, 190, token.empty() ? "An access token is required to request this resource."
                                              : "Invalid OAuth access token - Cannot parse access token"));
  return false;
}

CloudApi::Number& CloudApi::number(const std::string& id) {
  auto it = numbers_.find(id);
  if (it != numbers_.end()) return it->second;
  Number& n = numbers_[id];
  n.id = id;
  n.display = display_number(id);
  return n;
}

void CloudApi::describe(const http::Request& req, const http::Responder& respond) {
  if (!authorized(req, respond)) return;
  const std::string id = percent_decode(req.matches[2]);
  std::lock_guard lock(mu_);
  Number& n = number(id);
  respond(reply(200, {{"id", n.id}, {"display_phone_number", n.display}, {"verified_name", "Simulator " + n.display},
                      {"quality_rating", n.ban_code ? "RED" : "GREEN"}}));
}

void CloudApi::send(const http::Request& req, const http::Responder& respond) {
  if (!authorized(req, respond)) return;
  const std::string id = percent_decode(req.matches[2]);
  std::string error;
  auto body = parse_object(req.body, &error);
  if (!body) return respond(graph_error(400, 100, "(#100) Invalid parameter", error));
  auto product = string_field(*body, "messaging_product");
  auto to = string_field(*body, "to");
  auto type = string_field(*body, "type");
  auto recipient_type = body->contains("recipient_type") ? string_field(*body, "recipient_type") : std::optional<std::string>("individual");
  if (product != "whatsapp") return respond(graph_error(400, 100, "(#100) Invalid parameter", "messaging_product must be \"whatsapp\""));
  if (recipient_type != "individual") return respond(graph_error(400, 100, "(#100) Invalid parameter", "recipient_type must be \"individual\""));
  if (!to || !all_digits(*to)) return respond(graph_error(400, 100, "(#100) Invalid parameter", "'to' must be the recipient's phone number, digits only"));
  if (type != "text") return respond(graph_error(400, 100, "(#100) Invalid parameter", "only type \"text\" is simulated"));
  auto text = body->find("text");
  if (text == body->end() || !text->is_object() || !string_field(*text, "body") || (*text)["body"].get<std::string>().empty())
    return respond(graph_error(400, 100, "(#100) Invalid parameter", "text.body must be a non-empty string"));
  const std::string message = (*text)["body"].get<std::string>();

  std::string display;
  {
    std::lock_guard lock(mu_);
    Number& n = number(id);
    display = n.display;
    if (n.ban_code) return respond(graph_error(400, n.ban_code, message_for(n.ban_code), "The sender is restricted"));
    const int64_t now = now_ms();
    while (!n.window.empty() && n.window.front() <= now - 1000) n.window.pop_front();
    if (static_cast<int>(n.window.size()) >= ctx_.config.cloud_api.rate_per_s)
      return respond(graph_error(429, 130429, message_for(130429), "Cloud API message throughput has been reached."));
    const int pair = ctx_.config.cloud_api.pair_interval_ms;
    if (pair > 0) {
      auto last = n.last_to_ms.find(*to);
      if (last != n.last_to_ms.end() && now - last->second < pair)
        return respond(graph_error(400, 131056, message_for(131056), "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."));
    }
    n.window.push_back(now);
    n.last_to_ms[*to] = now;
  }

  const int delay_ms = send_latency_ms(ctx_.config) + ctx_.hang_left_ms();
  auto finish = [this, respond, id, display, to = *to, message] {
    if (simulated_failure(ctx_.config)) return respond(graph_error(500, 2, "Service temporarily unavailable"));
    const std::string wamid = new_wamid();
    ctx_.sends.record({"cloud_api", "phone_number_id", id, to, message, wamid, now_ms()});
    log::debug("simulator.cloud_api.sent", {{"phone_number_id", id}, {"provider_message_id", wamid}});
    respond(reply(200, {{"messaging_product", "whatsapp"},
                        {"contacts", json::array({{{"input", to}, {"wa_id", to}}})},
                        {"messages", json::array({{{"id", wamid}}})}}));
    status(id, display, wamid, to, "sent");
    const int delivered = ctx_.config.delivered_delay_ms;
    const int read = ctx_.config.read_delay_ms;
    if (delivered > 0)
      server_.after(std::chrono::milliseconds(delivered), [this, id, display, wamid, to] { status(id, display, wamid, to, "delivered"); });
    if (read > 0)
      server_.after(std::chrono::milliseconds(delivered + read), [this, id, display, wamid, to] { status(id, display, wamid, to, "read"); });
  };
  if (delay_ms > 0) server_.after(std::chrono::milliseconds(delay_ms), std::move(finish));
  else finish();
}

void CloudApi::status(const std::string& phone_number_id, const std::string& display, const std::string& wamid,
                      const std::string& to, const char* status) {
  notify(phone_number_id, display,
         {{"statuses", json::array({{{"id", wamid}, {"status", status}, {"timestamp", std::to_string(now_s())}, {"recipient_id", to}}})}},
         std::string("status.") + status);
}

void CloudApi::notify(const std::string& phone_number_id, const std::string& display, const json& value, const std::string& what) {
  const std::string& url = ctx_.config.cloud_api.webhook_url;
  if (url.empty()) return;
  json v = value;
  v["messaging_product"] = "whatsapp";
  v["metadata"] = {{"display_phone_number", display}, {"phone_number_id", phone_number_id}};
  const json notification = {{"object", "whatsapp_business_account"},
                             {"entry", json::array({{{"id", ctx_.config.cloud_api.waba_id},
                                                     {"changes", json::array({{{"field", "messages"}, {"value", v}}})}}})}};
  Callback cb;
  cb.url = url;
  cb.body = notification.dump();
  cb.what = what;
  cb.headers = {{"Content-Type", "application/json"},
                {"X-Hub-Signature-256", "sha256=" + hmac_hex(HmacDigest::Sha256, ctx_.config.cloud_api.app_secret, cb.body)}};
  ctx_.callbacks.enqueue("cloud_api/" + phone_number_id, std::move(cb));  // in order per number
}

std::optional<json> CloudApi::inbound(const std::string& to, const std::string& from, const std::string& text) {
  std::string id, display;
  {
    std::lock_guard lock(mu_);
    for (const auto& [pid, n] : numbers_)
      if (n.display == to || n.id == to) {
        id = pid;
        display = n.display;
      }
  }
  if (id.empty()) return std::nullopt;
  const std::string wamid = new_wamid();
  notify(id, display,
         {{"contacts", json::array({{{"profile", {{"name", "Sim " + from}}}, {"wa_id", from}}})},
          {"messages", json::array({{{"from", from}, {"id", wamid}, {"timestamp", std::to_string(now_s())}, {"type", "text"},
                                     {"text", {{"body", text}}}}})}},
         "message");
  return json{{"phone_number_id", id}, {"id", wamid}};
}

std::optional<json> CloudApi::ban(const std::string& account, int code) {
  std::lock_guard lock(mu_);
  for (auto& [pid, n] : numbers_)
    if (n.display == account || n.id == account) {
      n.ban_code = code;
      log::info("simulator.cloud_api.banned", {{"phone_number_id", pid}, {"code", std::to_string(code)}});
      return json{{"phone_number_id", pid}, {"code", code}};
    }
  return std::nullopt;
}

void CloudApi::verify(const http::Responder& respond) {
  const auto& c = ctx_.config.cloud_api;
  if (c.webhook_url.empty()) return respond(reply(409, {{"error", "simulator.cloud_api.webhook_url is not set: nothing to verify"}}));
  const std::string challenge = random_digits(10);
  HttpRequest req;
  req.method = "GET";
  req.url = c.webhook_url + (c.webhook_url.find('?') == std::string::npos ? "?" : "&") +
            "hub.mode=subscribe&hub.verify_token=" + percent_encode(c.verify_token) + "&hub.challenge=" + challenge;
  req.timeout_ms = ctx_.config.callback_timeout_ms;
  ctx_.callbacks.http().submit(std::move(req), [respond, challenge](HttpResponse r) {
    const bool ok = r.transport_ok() && r.status == 200 && r.body == challenge;
    json out = {{"ok", ok}, {"status", r.status}, {"echoed", r.body}};
    if (!r.transport_ok()) out["error"] = r.error;
    respond(reply(200, out));
  });
}

}  // namespace sb::sim
