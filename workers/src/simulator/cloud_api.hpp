#pragma once
// The WhatsApp Cloud API (Graph) shape, over real HTTP:
//   POST /{version}/{phone_number_id}/messages  (Authorization: Bearer <token>) → 200 wamid
//        errors as Graph's {"error":{"message","type","code","error_data","fbtrace_id"}}:
//        401/190 bad token, 400/100 bad body, 429/130429 beyond rate_per_s per number,
//        400/131056 same recipient faster than pair_interval_ms, 400/131048 (or the /sim/ban code)
//        for a banned number, 500/2 simulated failure
//   GET  /{version}/{phone_number_id} → {"id","display_phone_number","verified_name","quality_rating"}
// Callbacks to cloud_api.webhook_url, signed X-Hub-Signature-256: statuses sent → delivered →
// read after the configured delays, inbound messages; and the hub.challenge handshake.
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "context.hpp"

namespace sb::sim {

class CloudApi {
 public:
  CloudApi(Context& ctx, http::Server& server) : ctx_(ctx), server_(server) {}
  void routes();

  // Control API. Accounts are display numbers (or phone_number_ids) seen by a send or a GET.
  std::optional<json> inbound(const std::string& to, const std::string& from, const std::string& text);
  std::optional<json> ban(const std::string& account, int code);  // {"phone_number_id","code"}
  // Meta's verification handshake against webhook_url; answers {"ok","status","echoed"}.
  void verify(const http::Responder& respond);

  // "1556" + 7 digits derived from the id: the same on every node and run.
  static std::string display_number(const std::string& phone_number_id);

 private:
  struct Number {
    std::string id;
    std::string display;
    std::deque<int64_t> window;                            // send times (ms) within the last second
    std::unordered_map<std::string, int64_t> last_to_ms;   // recipient → last send, for the pair rate
    int ban_code = 0;                                      // non-zero: sends fail with it
  };
  void send(const http::Request& req, const http::Responder& respond);
  void describe(const http::Request& req, const http::Responder& respond);
  bool authorized(const http::Request& req, const http::Responder& respond) const;
  Number& number(const std::string& id);  // mu_ held
  void notify(const std::string& phone_number_id, const std::string& display, const json& value, const std::string& what);
  void status(const std::string& phone_number_id, const std::string& display, const std::string& wamid,
              const std::string& to, const char* status);

  Context& ctx_;
  http::Server& server_;
  std::mutex mu_;
  std::map<std::string, Number> numbers_;  // by phone_number_id
};

// Graph's error body.
http::Response graph_error(int http_status, int code, const std::string& message, const std::string& details = {});

}  // namespace sb::sim
