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

  EngineClient(const EngineNode& node, int timeout_ms);

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

 private:
  HttpResponse call(const std::string& method, const std::string& path, const std::string& body, bool json_accept = true);
  State state_of(const HttpResponse& r, const std::string& what);

  const EngineNode& node_;
  HttpClient http_;
};

// An engine (or Cloud API) answered, and said no: not worth retrying as is.
class ProviderRefused : public Error {
 public:
  explicit ProviderRefused(const std::string& what) : Error(ErrorKind::Invalid, what) {}
};

}  // namespace sb
