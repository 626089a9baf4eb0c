#include "switchboard/workers/webhooks/delivery.hpp"

namespace sb {

namespace {

// The attempt log's line for this delivery, before what the attempt itself adds.
AttemptRecord log_base(const Delivery& d, int attempt, const char* outcome) {
  AttemptRecord r;
  r.endpoint_id = d.endpoint.id;
  r.tenant_id = d.endpoint.tenant_id;
  r.event_id = d.event_id;
  r.event_type = d.event_type;
  r.attempt = attempt;
  r.outcome = outcome;
  return r;
}

AttemptRecord log_line(const Delivery& d, const DeliveryAttempt& a, const char* outcome) {
  AttemptRecord r = log_base(d, d.attempt, outcome);
  if (a.http_status > 0) r.http_status = static_cast<int>(a.http_status);
  if (!a.error.empty()) r.error = a.error;
  if (a.http_status > 0) r.response_excerpt = a.response_excerpt;
  r.latency_ms = static_cast<int>(a.latency_ms);
  return r;
}

}  // namespace

Decision decide(const Delivery& d, const std::optional<DeliveryAttempt>& attempt, const RetrySchedule& schedule,
                int park_delay_s, std::mt19937_64& rng) {
  Decision out;
  if (!attempt) {
    out.action = Decision::Action::Park;
    out.due_in_s = park_delay_s;
    out.failed_attempts = d.attempt - 1;
    return out;
  }
  switch (attempt->verdict) {
    case DeliveryAttempt::Verdict::Delivered:
      out.action = Decision::Action::Delivered;
      out.endpoint_succeeded = true;
      out.log = log_line(d, *attempt, "succeeded");
      return out;
    case DeliveryAttempt::Verdict::Gone:
      out.action = Decision::Action::Gone;
      out.reason = "the endpoint answered 410 Gone";
      out.log = log_line(d, *attempt, "failed");
      return out;
    case DeliveryAttempt::Verdict::Retry:
      break;
  }
  out.endpoint_failed = true;
  out.failed_attempts = d.attempt;
  if (const auto delay = schedule.next_delay(d.attempt, attempt->retry_after, rng)) {
    out.action = Decision::Action::Retry;
    out.due_in_s = static_cast<int>(delay->count());
    out.log = log_line(d, *attempt, "failed");
  } else {
    out.action = Decision::Action::DeadLetter;
    out.reason = "gave up after " + std::to_string(d.attempt) + " attempts: " + attempt->error;
    out.log = log_line(d, *attempt, "dead_lettered");
  }
  return out;
}

Decision dead_letter_unattempted(const Delivery& d, const std::string& reason) {
  Decision out;
  out.action = Decision::Action::DeadLetter;
  out.reason = reason;
  out.failed_attempts = d.attempt - 1;
  out.log = log_base(d, d.attempt - 1, "dead_lettered");
  out.log->error = reason;
  return out;
}

}  // namespace sb
