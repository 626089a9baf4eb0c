#pragma once
// The simulator's control API, for tests and for anyone trying the dev stack: it plays the
// phone and the provider's back office.
//   POST /sim/scan {"qr"}                         → 200 {"session","account"} (404: no session shows it)
//   POST /sim/inbound {"to","from","text"}        → 200 {"shape", …} (404 unknown account, 409 not WORKING)
//   POST /sim/disconnect {"account"}              → 200 (engine session loses its auth, shows a new QR)
//   POST /sim/reconnect {"account"}               → 200 (engine session's connection blips: it reports
//        STARTING, then WORKING again — auth kept — as WAHA does when the phone's link drops)
//   POST /sim/ban {"account","code"?}             → 200 (engine: FAILED; Cloud number: sends fail with code)
//   POST /sim/unban {"account"}                   → 200 (Cloud number: sends succeed again)
//   GET  /sim/log[?session=S|?phone_number_id=P]  → {"sends":[…],"dropped"}
//   GET  /sim/sessions/log                        → [{"session","node","started_at_ms","stopped_at_ms"}]
//   POST /sim/cloud_api/verify                    → {"ok","status","echoed"}
//   POST /sim/hang {"for_ms"}                     → 200 {"hang_until_ms"}: every send and lookup
//        arriving for that long waits until it ends before it is served (0: end it now)
#include "cloud_api.hpp"
#include "context.hpp"
#include "engine_api.hpp"

namespace sb::sim {

class ControlApi {
 public:
  ControlApi(Context& ctx, http::Server& server, EngineApi& engine, CloudApi& cloud)
      : ctx_(ctx), server_(server), engine_(engine), cloud_(cloud) {}
  void routes();

 private:
  // The body's string fields, or a 400 already sent (nullopt).
  static std::optional<json> fields(const http::Request& req, const http::Responder& respond,
                                    std::initializer_list<const char*> required);
  void inbound(const http::Request& req, const http::Responder& respond);
  void ban(const http::Request& req, const http::Responder& respond);

  Context& ctx_;
  http::Server& server_;
  EngineApi& engine_;
  CloudApi& cloud_;
};

}  // namespace sb::sim
