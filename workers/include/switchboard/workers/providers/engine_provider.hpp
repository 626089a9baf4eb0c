#pragma once
// Sends through a WAHA-shaped engine node: POST {node}/api/sendText {"session","chatId","text"}
// with X-Api-Key. Written against WAHA's REST API as documented for 2024.x–2025.x (Core and
// Plus): the response is the engine's raw message object, its id taken from "id" (string or
// {"_serialized"}) or "key.id". A 422 (session not WORKING on the engine) is retryable and
// certainly not sent; a reach-out time-lock (error 463) backs off, and repeated ones pause the
// session. WAHA has no idempotency key and no lookup by our id: reconcile() answers
// Unknown, so an interrupted send is failed as uncertain (worker.on_uncertain), never repeated.
// Every call carries the placement's generation (X-Switchboard-Generation); 404/409 and an
// unreachable node send it back to its claim (SendResult::reroute): the session may have moved.
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/core/secret_box.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

// WhatsApp's reach-out time-lock (the engine answers its server error 463: this number may not
// message new contacts for a while; nothing was sent). One lock backs the session off (the
// pacer's shared back-off); `threshold` of them within `window` pause it (reach_out_timelock).
class ReachOutLocks {
 public:
  ReachOutLocks(int threshold, std::chrono::seconds window) : threshold_(threshold), window_(window) {}
  // Counts a lock of session `key` at `now`; true when it is the threshold-th within the window
  // (the count then starts over).
  bool repeated(const std::string& key, std::chrono::steady_clock::time_point now);
  static bool is_lock(long status, const std::string& body);

 private:
  const int threshold_;
  const std::chrono::seconds window_;
  std::mutex mu_;
  std::unordered_map<std::string, std::deque<std::chrono::steady_clock::time_point>> seen_;
};

// The same count kept in Redis, so it holds across worker replicas and lanes (a session's
// sends go through all three lanes, each its own process): one atomic script per lock, keyed by
// the session next to its pacing keys (sb:pace:{tenant/session}:reachout, a sorted set of lock
// times on Redis' clock, expiring with the window). While Redis can't be reached the
// process's own count decides (a pause then needs its threshold of locks in one process).
class SharedReachOutLocks {
 public:
  // No `redis`: the in-process count only.
  SharedReachOutLocks(const RedisConfig* redis, int threshold, std::chrono::seconds window);
  ~SharedReachOutLocks();
  bool repeated(const std::string& tenant, const std::string& session);
  static const std::string& script();

 private:
  const int threshold_;
  const std::chrono::seconds window_;
  std::mutex mu_;  // the client is not thread-safe
  std::unique_ptr<RedisClient> redis_;
  ReachOutLocks local_;
};

class EngineProvider : public Provider {
 public:
  // `redis`: where reach-out locks are counted across replicas (nullptr: in this process).
  EngineProvider(const EngineConfig& config, SecretBox secrets, const RedisConfig* redis = nullptr);
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override;
  std::string name() const override { return "engine"; }

  // "+15551234567" → "15551234567@c.us" (WAHA's chat id of a phone number).
  static std::string chat_id(const std::string& e164);

 private:
  // The node to call: the registry's row from the claim, credentials opened (config nodes' from config).
  std::optional<EngineNode> node_of(const SessionRoute& route, std::string& error) const;

  const EngineConfig& config_;
  SecretBox secrets_;
  SharedReachOutLocks locks_;
  AsyncHttpClient client_;
};

}  // namespace sb
