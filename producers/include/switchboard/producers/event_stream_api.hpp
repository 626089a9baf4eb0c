#pragma once
// The real-time event stream routes of intake (docs: README "Real-time event stream"):
//
//   GET /v1/events/stream   Server-Sent Events: `id: <cursor>`, `event: <type>`, `data: <event>`
//   GET /v1/events/ws       WebSocket: one text frame {"cursor": …, "event": {…}} per event
//
// Query: types=message.sent,message.* (webhook patterns), sessions=main,support, after=<cursor>
// (or the Last-Event-ID header, which wins: an EventSource reconnecting keeps its URL).
// Authenticated like every intake route (Authorization: Bearer <key>); browsers, which cannot
// set headers on EventSource or WebSocket, may pass ?api_key=<key> instead.
#include <functional>
#include <optional>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/producers/event_feed.hpp"

namespace sb {

class EventStreamApi {
 public:
  // (request, API key from the header or ?api_key=) → tenant id, or nullopt with the answer
  // (401, or 429 from the brute-force throttle) written to the response; may block (PostgreSQL
  // on a cache miss).
  using Authenticate =
      std::function<std::optional<std::string>(const http::Request&, const std::string& api_key, http::Response&)>;
  EventStreamApi(const Config& config, Authenticate authenticate);

  // Registers the two routes; `server` must be stopped before this object is destroyed.
  void mount(http::Server& server);
  // Prometheus text for /metrics.
  std::string metrics() const;
  const EventFeed& feed() const { return feed_; }

 private:
  void open(const http::Request& req, const http::Responder& respond, StreamFormat format);

  Authenticate authenticate_;
  EventFeed feed_;
  http::Server* server_ = nullptr;
};

}  // namespace sb
