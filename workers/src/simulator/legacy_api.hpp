#pragma once
// The simulator's own provider API, the one HttpProvider, the benches and the pipeline tests use:
//   POST /v1/messages {"tenant","session","to","text"} + Idempotency-Key → 200 {"provider_message_id","duplicate"}
//        (503 with probability failure_rate; 400 malformed); deduplicated by the key unless
//        simulator.dedupe is false
//   GET  /v1/stats, GET /v1/log?tenant=T&session=S, GET /v1/messages/{id}
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "context.hpp"

namespace sb::sim {

class LegacyApi {
 public:
  LegacyApi(Context& ctx, http::Server& server) : ctx_(ctx), server_(server) {}
  void routes();

 private:
  void send(const http::Request& req, const http::Responder& respond);
  http::Response outcome(const std::string& key, const std::string& tenant, const std::string& session,
                         const std::string& to, const std::string& text, int delay_ms);

  Context& ctx_;
  http::Server& server_;
  struct Sent {
    std::string provider_message_id;
    std::string tenant;
    std::string session;
    uint64_t count = 0;  // arrivals with this Idempotency-Key, the first included
  };
  struct Log {
    std::vector<std::string> first;       // first arrivals, in order
    std::vector<std::string> duplicates;  // ids that arrived more than once (listed once)
    uint64_t arrivals = 0;                // every arrival, duplicates included
  };
  std::mutex mu_;
  std::unordered_map<std::string, Sent> by_key_;  // Idempotency-Key (our message id) → first send
  std::map<std::pair<std::string, std::string>, Log> logs_;  // (tenant, session)
  uint64_t accepted_ = 0;    // first arrivals
  uint64_t duplicates_ = 0;  // repeated arrivals (sent again when dedupe is off)
  uint64_t sends_ = 0;       // messages "sent": first arrivals, or every arrival without dedupe
  uint64_t failures_ = 0;
};

}  // namespace sb::sim
