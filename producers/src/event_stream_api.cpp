#include "switchboard/producers/event_stream_api.hpp"

#include "json_reply.hpp"

#include <sstream>

#include "switchboard/core/log.hpp"
#include "switchboard/core/tenant_store.hpp"
#include "switchboard/core/webhook_store.hpp"

namespace sb {
using nlohmann::json;

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

// The subscription a request asks for, or the 4xx written to res.
std::optional<Subscription> read_subscription(const http::Request& req, StreamFormat format, http::Response& res) {
  Subscription sub;
  sub.format = format;
  sub.filter.types = split_list(req.get_param_value("types"));
  for (const auto& t : sub.filter.types)
    if (!valid_event_pattern(t)) {
      reply_error(res, 422,
                  "unknown event type '" + t + "' in types: use message.sent, message.failed, message.delivered, message.read, message.received, session.status, session.qr, session.deleted, webhook.endpoint.disabled, "
                  "a family such as message.* or session.*, or *",
                  "types");
      return std::nullopt;
    }
  sub.filter.sessions = split_list(req.get_param_value("sessions"));
  for (const auto& s : sub.filter.sessions)
    if (!TenantStore::valid_session_name(s)) {
      reply_error(res, 422, "invalid session name '" + s + "' in sessions", "sessions");
      return std::nullopt;
    }
  const bool header = req.has_header("Last-Event-ID") && !req.get_header_value("Last-Event-ID").empty();
  if (header || req.has_param("after")) {
    const auto text = header ? req.get_header_value("Last-Event-ID") : req.get_param_value("after");
    sub.after = EventCursor::parse(text);
    if (!sub.after) {
      reply_error(res, 400, "malformed cursor '" + text + "': expected the id of an event this stream sent, e.g. 3-1042",
                  header ? "Last-Event-ID" : "after");
      return std::nullopt;
    }
  }
  return sub;
}

}  // namespace

EventStreamApi::EventStreamApi(const Config& config, Authenticate authenticate)
    : authenticate_(std::move(authenticate)), feed_(config) {}

void EventStreamApi::mount(http::Server& server) {
  server_ = &server;
  // Async routes whose work moves to the blocking pool at once: authentication and a cursor's
  // retention check may wait on PostgreSQL and the broker.
  server.async_route("GET", "/v1/events/stream", [this](const http::Request&, http::Responder respond) {
    server_->offload([this, respond] { open(respond.request(), respond, StreamFormat::sse); });
  });
  server.async_route("GET", "/v1/events/ws", [this](const http::Request&, http::Responder respond) {
    server_->offload([this, respond] { open(respond.request(), respond, StreamFormat::websocket); });
  });
}

void EventStreamApi::open(const http::Request& req, const http::Responder& respond, StreamFormat format) {
  http::Response res;
  try {
    std::string key;
    const auto auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    else key = req.get_param_value("api_key");
    const auto tenant = authenticate_(req, key, res);
    if (!tenant) return respond(std::move(res));
    if (format == StreamFormat::websocket && !req.is_websocket_upgrade()) {
      res.set_header("Upgrade", "websocket");
      reply_error(res, 426, "this route speaks WebSocket: send 'Connection: Upgrade' and 'Upgrade: websocket' "
                            "(or use GET /v1/events/stream for Server-Sent Events)");
      return respond(std::move(res));
    }
    auto sub = read_subscription(req, format, res);
    if (!sub) return respond(std::move(res));
    sub->tenant = *tenant;
    auto admitted = feed_.admit(std::move(*sub));
    if (auto* no = std::get_if<StreamRefusal>(&admitted)) {
      json body = {{"error", no->error}};
      if (!no->field.empty()) body["field"] = no->field == "after" && req.has_header("Last-Event-ID") ? "Last-Event-ID" : no->field;
      for (const auto& [k, v] : no->extra) body[k] = v;
      if (no->status == 429 || no->status == 503) res.set_header("Retry-After", "2");
      reply(res, no->status, body);
      return respond(std::move(res));
    }
    auto& admission = std::get<EventFeed::Admission>(admitted);
    std::shared_ptr<http::Stream> stream;
    if (format == StreamFormat::sse) {
      http::Response head;
      head.set_header("Content-Type", "text/event-stream; charset=utf-8");
      head.set_header("Cache-Control", "no-cache");
      head.set_header("X-Accel-Buffering", "no");  // nginx: pass events through as they come
      stream = respond.open_event_stream(std::move(head));
    } else {
      stream = respond.accept_websocket();
    }
    if (stream) feed_.attach(std::move(admission), stream);
  } catch (const Error& e) {
    log::error("stream.open_failed", {{"path", req.path}, {"kind", to_string(e.kind())}, {"detail", e.what()}});
    if (e.retryable()) res.set_header("Retry-After", "2");
    reply_error(res, e.retryable() ? 503 : 500, e.retryable() ? "a dependency is unavailable; retry later" : "internal error");
    respond(std::move(res));
  }
}

std::string EventStreamApi::metrics() const {
  const auto s = feed_.stats();
  auto line = [](const char* name, const char* type, const char* help, uint64_t v) {
    return std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
           std::to_string(v) + "\n";
  };
  return line("sb_intake_streams_open", "gauge", "Open event streams (SSE and WebSocket).", s.open_streams) +
         line("sb_intake_stream_events_read_total", "counter", "Records the live reader read from sb.events.", s.events_read) +
         line("sb_intake_stream_events_delivered_total", "counter", "Events queued to streams (live and replayed).", s.events_delivered) +
         line("sb_intake_stream_events_replayed_total", "counter", "Events replayed to resuming streams.", s.events_replayed) +
         line("sb_intake_stream_overflows_total", "counter", "Streams closed because their client read too slowly.", s.overflows) +
         line("sb_intake_stream_foreign_records_total", "counter", "Records whose key and tenant disagree (never delivered).", s.foreign_records) +
         line("sb_intake_stream_lease_fallbacks_total", "counter", "Stream admissions Redis could not decide (the per-tenant limit held per process only).", s.lease_fallbacks) +
         line("sb_intake_stream_ready", "gauge", "Whether the live reader knows where sb.events ends (0 while starting: streams get 503).", feed_.ready() ? 1 : 0);
}

}  // namespace sb
