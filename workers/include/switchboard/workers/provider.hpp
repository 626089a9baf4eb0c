#pragma once
// A session provider executes commands for one messaging account ("session"): the simulator
// today; a WhatsApp engine or a cloud API later. Implementations must be safe to call from many
// threads at once (different sessions), and must dedupe on SendRequest::message_id, which is
// the same on every retry and every replay of a command.
#include <string>

namespace sb {

struct SendRequest {
  std::string tenant_id;
  std::string session;
  std::string message_id;  // idempotency key at the provider
  std::string to;
  std::string text;
};

struct SendResult {
  enum class Status { Sent, Rejected, RetryableError };
  Status status = Status::RetryableError;
  std::string provider_message_id;  // when Sent
  std::string error;                // when not Sent: what failed, for logs and message.failed
};

class Provider {
 public:
  virtual ~Provider() = default;
  // Blocks up to the provider's timeout. Never throws: every failure is a SendResult.
  virtual SendResult send(const SendRequest& request) = 0;
  virtual std::string name() const = 0;
  // Later: start/stop session, QR, receipts (session lifecycle comes with its own issue).
};

}  // namespace sb
