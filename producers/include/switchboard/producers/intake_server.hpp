#pragma once
// `switchboard intake`: the HTTP API in front of the command lanes.
//
//   POST /v1/sessions/{session}/messages   202 {"id","status":"queued"} once Kafka acked it
//   GET  /v1/messages/{id}                 the message with its status history (own tenant only)
//   GET  /health                           process is up
//   GET  /health/ready                     Kafka and PostgreSQL reachable
//   GET  /v1/events/stream, /v1/events/ws  the tenant's events, live and resumable (event_stream_api.hpp)
//   GET  /metrics                          Prometheus text
#include <memory>
#include <string>

#include "switchboard/core/config.hpp"

namespace sb {

class IntakeServer {
 public:
  explicit IntakeServer(const Config& config);
  ~IntakeServer();
  // Binds intake.listen and serves until stop(). Throws ConfigError if it can't bind.
  void run();
  void stop();
  int port() const;
  bool wait_until_ready(int timeout_ms) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb
