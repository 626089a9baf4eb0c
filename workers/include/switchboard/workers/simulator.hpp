#pragma once
// `switchboard simulator`: an HTTP server that plays a messaging provider, so the worker's real
// HTTP path is exercised. Sends are deduplicated by Idempotency-Key (our message id) unless
// simulator.dedupe is false (then every request is sent again, like Cloud API/WAHA); latency
// (a timer per request, no thread) and failure rate are configurable, and /v1/stats, /v1/log
// and /v1/messages/{id} let tests and adapters check what arrived.
//
// API:
//   POST /v1/messages  {"tenant","session","to","text"} + header Idempotency-Key
//        → 200 {"provider_message_id": "...", "duplicate": bool}
//        → 503 {"error": "simulated failure"} with probability failure_rate (retryable)
//        → 400 on a malformed body
//        ("duplicate" is true only when dedupe is on; off, a repeat gets a new provider id)
//   GET  /v1/stats     → {"accepted": first arrivals, "duplicates": repeated arrivals,
//                         "sends": messages sent, "failures": N, "dedupe": bool}
//   GET  /v1/log?tenant=T&session=S → {"message_ids": [...first arrivals, in order],
//                         "arrivals": every arrival incl. repeats, "duplicates": [ids received more than once]}
//   GET  /v1/messages/{message_id} → 200 {"provider_message_id" (the first), "count": arrivals} or 404
//   GET  /health       → 200
#include <atomic>
#include <memory>
#include <string>

#include "switchboard/core/config.hpp"

namespace sb {

class Simulator {
 public:
  explicit Simulator(const SimulatorConfig& config);
  ~Simulator();
  // Binds and serves until stop(); throws ConfigError if the listen address can't be bound.
  void run();
  void stop();
  // The port actually bound (useful with port 0); valid once run() is serving.
  int port() const;
  bool wait_until_ready(int timeout_ms) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Provider talking to the simulator (or anything with its API) over HTTP, one curl handle per
// calling thread so connections are reused.
class HttpProvider;

}  // namespace sb
