#pragma once
// A session provider executes commands for one messaging account ("session"): the simulator
// today; WAHA-shaped engines and the WhatsApp Cloud API next (their session commands — start,
// stop, logout, QR — and per-number throughput limits come with the sessions issue).
//
// Calls are asynchronous: a worker keeps thousands in flight on a few threads, and a waiting
// session costs memory, not a thread. Real providers do not dedupe, so every result says
// whether a failed request may still have been acted upon (maybe_delivered): such a send is
// never blindly repeated — the worker reconciles, or fails it as "uncertain".
#include <cstdint>
#include <functional>
#include <string>

namespace sb {

// Where a session's sends go, as its row says (read with the send's claim).
struct SessionRoute {
  std::string provider = "simulator";  // simulator | engine | cloud_api
  std::string node, engine_name;       // engine
  std::string phone_number_id;         // cloud_api
  std::string secrets;                 // base64 of the sealed credentials (SecretBox); opened by the adapter
  // engine: the placement's fencing generation (sent as X-Switchboard-Generation) and the
  // node's URL and sealed credentials from the registry (empty: a config node).
  int64_t generation = 0;
  std::string node_url, node_secrets;
};

struct SendRequest {
  std::string tenant_id;
  std::string session;
  std::string message_id;  // idempotency key where the provider supports one
  std::string to;
  std::string text;
  SessionRoute route;
};

struct SendResult {
  enum class Status { Sent, Rejected, RetryableError };
  Status status = Status::RetryableError;
  std::string provider_message_id;  // when Sent
  std::string error;                // when not Sent: what failed, for logs and message.failed
  // RetryableError only: the request reached the provider (a timeout after sending, a 5xx
  // other than 503) so it may have been sent; false when it certainly was not (connection
  // refused, 429/503 before any work).
  bool maybe_delivered = false;
  // Not before this long (the provider asked for it: a rate limit); 0 = the retry policy's delay.
  int retry_after_ms = 0;
  // The provider throttled this sender (HTTP 429, Graph 130429): every lane's and replica's
  // sends of the session back off (Pacer::backoff), not only this retry.
  bool throttled = false;
  // The provider flagged the sender (spam limit, policy block): the session should pause.
  std::string pause_reason;
  // RetryableError, certainly not sent: the session's placement may have changed (its node is
  // unreachable, doesn't have it, or holds a newer generation). The send goes back to its
  // claim, which reads the placement again and waits while the session is not WORKING.
  bool reroute = false;
};

// What a provider knows of an earlier send of a message id (after a crash or a timeout).
struct ReconcileResult {
  enum class Status { Sent, NotSent, Unknown };
  Status status = Status::Unknown;
  std::string provider_message_id;  // when Sent
  std::string detail;
};

class Provider {
 public:
  using SendDone = std::function<void(SendResult)>;
  using ReconcileDone = std::function<void(ReconcileResult)>;
  virtual ~Provider() = default;

  // Thread-safe, never blocks, never throws: `done` runs exactly once, on any thread, within
  // the provider's timeout.
  virtual void send(const SendRequest& request, SendDone done) = 0;
  // Whether the provider has (or sent) this message id. Providers that can't tell answer
  // Unknown (the default).
  virtual void reconcile(const SendRequest&, ReconcileDone done) { done({ReconcileResult::Status::Unknown, {}, "provider cannot reconcile"}); }
  virtual std::string name() const = 0;

  // Blocking convenience for tools and tests (waits for `done`).
  SendResult send(const SendRequest& request);
};

}  // namespace sb
