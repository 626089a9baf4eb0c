#pragma once
// One delivery (an event for one endpoint) and what happens after an attempt at it. `decide` is
// pure: the dispatcher's whole retry policy, testable without a network or a database.
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "switchboard/core/kafka.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/retry_schedule.hpp"
#include "switchboard/workers/webhooks/webhook_request.hpp"

namespace sb {

struct Delivery {
  WebhookEndpoint endpoint;  // snapshot: url, secrets, ordering
  std::string event_id, event_type;
  std::optional<std::string> session;
  std::shared_ptr<const std::string> body;  // shared by an event's fan-out
  int attempt = 1;                          // number of this attempt (1 = first)
  int64_t scheduled_id = 0;                 // 0: live from Kafka; else its webhook_deliveries row
  kafka::TopicPartition source{};           // the sb.events record (live ones; for DLQ headers)
  int64_t source_offset = -1;               // -1: unknown (claimed from the schedule)
  bool live() const { return scheduled_id == 0; }
  bool ordered() const { return endpoint.ordering == "per_session"; }
};

struct Decision {
  enum class Action {
    Delivered,   // done
    Retry,       // failed: try again after due_in_s
    Park,        // not attempted (breaker open, endpoint busy, behind an earlier event): later
    Gone,        // 410: disable the endpoint, stop
    DeadLetter,  // out of attempts (or endpoint disabled): sb.webhooks.dlq
  };
  Action action = Action::Retry;
  int due_in_s = 0;
  int failed_attempts = 0;           // stored with the row (counts real attempts only)
  std::optional<AttemptRecord> log;  // the attempt log line, when an attempt was made (or dead-lettered)
  std::string reason;                // DeadLetter / Gone: why, for the DLQ header and the endpoint
  bool endpoint_failed = false;      // an attempt was made and failed (endpoint health)
  bool endpoint_succeeded = false;
};

// attempt: nullopt when no attempt was made (parked). park_delay_s: when to look again then.
Decision decide(const Delivery& d, const std::optional<DeliveryAttempt>& attempt, const RetrySchedule& schedule,
                int park_delay_s, std::mt19937_64& rng);
// A delivery given up without an attempt (endpoint disabled or deleted meanwhile).
Decision dead_letter_unattempted(const Delivery& d, const std::string& reason);

}  // namespace sb
