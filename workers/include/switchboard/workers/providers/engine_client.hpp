#pragma once
// The session-management half of WAHA's REST API (the send half is EngineProvider), blocking:
// lifecycle commands are few and run on their own thread. Written against WAHA's documented
// REST API (2024.x–2025.x, Core and Plus): POST /api/sessions (422 when the name exists),
// POST /api/sessions/{s}/start|stop|restart|logout, DELETE /api/sessions/{s}, and
// GET /api/{s}/auth/qr (?format=raw for the value; Accept: application/json for the PNG).
//
// Transport errors, 5xx and 429 throw Unavailable (retryable); other refusals throw
// ProviderRefused with the engine's answer.
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/http_client.hpp"

namespace sb {

class EngineClient {
 public:
  struct Qr {
    std::string value, png_base64;
  };
  // The engine's view of a session after a call: its status word and paired account.
  struct State {
    std::string status;
    std::optional<std::string> account;  // digits of me.id, when paired
  };

  // `generation` > 0: every call carries it (X-Switchboard-Generation, the placement's fence).
  EngineClient(const EngineNode& node, int timeout_ms, int64_t generation = 0);

  // Creates the session with our webhook (callback_url, HMAC key) and starts it; starts it
  // if it exists already.
  State start(const std::string& name, const std::string& callback_url, const std::string& hmac_key,
              const std::string& tenant, const std::string& session);
  State stop(const std::string& name);
  State restart(const std::string& name, const std::string& callback_url, const std::string& hmac_key,
                const std::string& tenant, const std::string& session);
  State logout(const std::string& name);
  void remove(const std::string& name);
  // nullopt when the engine shows no QR now (not SCAN_QR_CODE).
  std::optional<Qr> qr(const std::string& name);
  // The names of the sessions running on the node (GET /api/sessions): the placer's probe.
  std::vector<std::string> running();

 private:
  HttpResponse call(const std::string& method, const std::string& path, const std::string& body, bool json_accept = true);
  State state_of(const HttpResponse& r, const std::string& what);

  EngineNode node_;
  int64_t generation_;
  HttpClient http_;
};

// The node holds a newer placement of the session than this call's generation (the simulator
// answers 409 {"stale_generation": …}): the caller is a stale owner; nothing changed there.
class StalePlacement : public Error {
 public:
  explicit StalePlacement(const std::string& what) : Error(ErrorKind::Conflict, what) {}
};

// An engine (or Cloud API) answered, and said no: not worth retrying as is.
class ProviderRefused : public Error {
 public:
  explicit ProviderRefused(const std::string& what) : Error(ErrorKind::Invalid, what) {}
};

}  // namespace sb
