#pragma once
// `switchboard simulator`: an HTTP server that plays messaging providers, so workers, adapters
// and callback intake are exercised over real HTTP. One process serves three shapes at once
// (the code lives in workers/src/simulator/, one file per concern):
//
// * legacy (workers/src/simulator/legacy_api.hpp): the simulator's own API used by HttpProvider,
//   the benches and the pipeline tests —
//     POST /v1/messages {"tenant","session","to","text"} + Idempotency-Key → 200 {"provider_message_id","duplicate"}
//     (503 with probability failure_rate; deduplicated by the key unless simulator.dedupe is false),
//     GET /v1/stats, GET /v1/log?tenant=T&session=S, GET /v1/messages/{id}, GET /health;
// * engine (engine_api.hpp): WAHA's REST API — sessions, rotating QR codes (real PNGs),
//   sendText, and webhooks session.status / message.ack / message signed with HMAC-SHA512;
// * cloud_api (cloud_api.hpp): the WhatsApp Cloud API's Graph paths — /{version}/{phone_number_id}/messages
//   with Graph error codes and the per-number throughput limit, statuses/messages callbacks signed
//   with X-Hub-Signature-256, and the hub.challenge handshake;
// * plus the control API (control_api.hpp: /sim/scan, /sim/inbound, /sim/disconnect, /sim/ban,
//   /sim/log, /sim/sessions/log, /sim/cloud_api/verify) that plays the phone and the back office.
// Latency and failure_rate apply to the sends of every shape.
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
