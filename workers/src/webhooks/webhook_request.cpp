#include "switchboard/workers/webhooks/webhook_request.hpp"

#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_signature.hpp"

namespace sb {

DeliveryAttempt classify(const HttpResponse& r) {
  DeliveryAttempt a;
  a.http_status = r.status;
  a.latency_ms = r.elapsed_ms;
  a.response_excerpt = r.body.substr(0, 2048);
  if (!r.transport_ok()) {
    a.error = r.error;  // a refused address says why (the HTTP client adds the guard's reason)
    return a;
  }
  if (r.status >= 200 && r.status < 300) {
    a.verdict = DeliveryAttempt::Verdict::Delivered;
    return a;
  }
  if (r.status == 410) {
    a.verdict = DeliveryAttempt::Verdict::Gone;
    a.error = "HTTP 410 Gone: the endpoint asked to stop deliveries";
    return a;
  }
  a.error = "HTTP " + std::to_string(r.status) + (r.status >= 300 && r.status < 400 ? " (redirects are not followed)" : "");
  if (r.status == 429 || r.status == 503) {
    for (const auto& [k, v] : r.headers)
      if (k == "retry-after") {
        try {
          std::size_t used = 0;
          const long long secs = std::stoll(v, &used);
          if (used == v.size() && secs >= 0) a.retry_after = std::chrono::seconds(secs);
        } catch (...) {
          // An HTTP-date or junk: fall back to the schedule.
        }
      }
  }
  return a;
}

std::vector<std::pair<std::string, std::string>> webhook_headers(const WebhookEndpoint& endpoint,
                                                                 const std::string& event_id, const std::string& body,
                                                                 std::chrono::system_clock::time_point now) {
  std::vector<WebhookSecret> secrets = {parse_webhook_secret(endpoint.secret)};
  // RFC 3339 strings in one format compare in time order.
  if (endpoint.previous_secret && endpoint.previous_secret_expires_at && *endpoint.previous_secret_expires_at > to_rfc3339(now))
    secrets.push_back(parse_webhook_secret(*endpoint.previous_secret));
  const auto ts = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return {{"content-type", "application/json"},
          {std::string(kWebhookIdHeader), event_id},
          {std::string(kWebhookTimestampHeader), std::to_string(ts)},
          {std::string(kWebhookSignatureHeader), sign_webhook(secrets, event_id, ts, body)},
          {"user-agent", "switchboard-webhooks"}};
}

}  // namespace sb
