#pragma once
// The engine-node shape: WAHA's REST API and webhooks (the subset Switchboard's engine adapter
// uses), over real HTTP.
//   POST   /api/sessions {"name","config"?:{"webhooks"?,"metadata"?},"start"?}  → 201 (422 name taken)
//   POST   /api/sessions/{s}/start|stop|restart|logout → 201 session (idempotent; 404)
//   DELETE /api/sessions/{s} → 200;  GET /api/sessions[?all=true];  GET /api/sessions/{s}
//   GET    /api/{s}/auth/qr [?format=raw | Accept: application/json] → PNG / JSON (422 unless SCAN_QR_CODE)
//   POST   /api/sendText {"session","chatId","text"} → 201 message (422 unless WORKING)
// Any call carrying X-Switchboard-Generation older than the newest one seen for that session by
// a node of the storage group (simulator.auth_store) → 409 {"stale_generation"}: the fence a
// stale owner meets. Real WAHA ignores the header.
// Lifecycle: start → STARTING → (start_delay_ms) WORKING with stored auth, else SCAN_QR_CODE with a
// QR value rotating every qr_rotate_ms; stop keeps auth, logout drops it. Webhooks session.status,
// message.ack (SERVER, DEVICE, READ after the configured delays), message (inbound), signed with
// X-Webhook-Hmac (HMAC-SHA512) when the webhook has a key.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "context.hpp"

namespace sb::sim {

class EngineApi {
 public:
  EngineApi(Context& ctx, http::Server& server) : ctx_(ctx), server_(server) {}
  void routes();

  // Control API (tests, dev users). Each returns nullopt when nothing matches.
  std::optional<json> scan(const std::string& qr);  // {"session","account"}
  // {"id"}; *not_working set (and nullopt) when the account's session isn't WORKING.
  std::optional<json> inbound(const std::string& to, const std::string& from, const std::string& text, bool* not_working);
  std::optional<json> disconnect(const std::string& account);  // {"session"}
  std::optional<json> reconnect(const std::string& account);   // {"session"}; nullopt unless running
  std::optional<json> ban(const std::string& account);         // {"session"}
  // The next `sends` sendText calls of the account's session answer WhatsApp's reach-out
  // time-lock (HTTP 500, "server returned error 463", as WAHA GOWS does); nothing is sent.
  std::optional<json> reach_out_lock(const std::string& account, int sends);  // {"session","sends"}

 private:
  struct Session {
    std::string name;
    std::string status = "STOPPED";
    json config = json::object();
    std::optional<Account> me;
    std::string qr;      // shown while SCAN_QR_CODE
    uint64_t epoch = 0;  // bumped by every transition: timers of an older epoch do nothing
    uint64_t generation = 0;  // the newest X-Switchboard-Generation a call for it carried here
  };

  // X-Switchboard-Generation older than the newest one seen for the session (on any node of
  // the storage group): answers 409 {"stale_generation"} and returns true.
  bool stale(const http::Request& req, const std::string& session, const http::Responder& respond, uint64_t* generation);

  // Handlers.
  void create(const http::Request& req, const http::Responder& respond);
  void action(const http::Request& req, const http::Responder& respond);
  void remove(const http::Request& req, const http::Responder& respond);
  void list(const http::Request& req, const http::Responder& respond);
  void get(const http::Request& req, const http::Responder& respond);
  void qr(const http::Request& req, const http::Responder& respond);
  void send_text(const http::Request& req, const http::Responder& respond);
  void sent(const std::string& session, const Account& me, const std::string& chat_id, const std::string& text,
            const http::Responder& respond);

  // Transitions (mu_ held).
  void start(Session& s);
  void stop(Session& s, const std::string& status = "STOPPED");
  void finish_start(Session& s);
  void show_qr(Session& s);
  void set_status(Session& s, const std::string& status, bool emit_even_if_same = false);
  void emit(const Session& s, const std::string& event, const json& payload);
  void schedule(const Session& s, int delay_ms, void (EngineApi::*step)(Session&));
  void rotate_qr(Session& s);
  void ack(const std::string& session, const json& payload, int ack, const char* name);
  Session* find_by_account(const std::string& digits);
  Account new_account();
  json to_json(const Session& s) const;
  static bool running(const std::string& status);

  Context& ctx_;
  http::Server& server_;
  std::mutex mu_;
  std::map<std::string, Session> sessions_;
  std::set<std::string> banned_;  // account digits
  std::map<std::string, int> reach_out_locks_;  // session → sendText calls still to refuse
  uint64_t epochs_ = 0;
};

}  // namespace sb::sim
