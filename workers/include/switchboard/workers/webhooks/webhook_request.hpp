#pragma once
// One delivery attempt's request and its verdict: the Standard Webhooks headers an attempt
// carries, and what the dispatcher does with the response.
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "switchboard/core/http_client.hpp"
#include "switchboard/core/webhook_store.hpp"

namespace sb {

struct DeliveryAttempt {
  enum class Verdict { Delivered, Retry, Gone };  // Gone: 410, disable the endpoint
  Verdict verdict = Verdict::Retry;
  long http_status = 0;                            // 0: no response (refused, timeout, …)
  std::string error;                               // why it failed, for the attempt log
  double latency_ms = 0;
  std::string response_excerpt;                    // first 2 KiB of the body
  std::optional<std::chrono::seconds> retry_after; // from 429/503
};

// 2xx delivered; 410 gone; everything else (3xx — redirects are not followed —, 4xx, 5xx,
// transport errors, refused addresses) is retried. Retry-After (seconds) is read on 429/503.
DeliveryAttempt classify(const HttpResponse& response);

// The Standard Webhooks request headers for one attempt: webhook-id (the event id, stable across
// retries), webhook-timestamp (now) and webhook-signature (the endpoint's secret, plus the
// previous one while its rotation window is open).
std::vector<std::pair<std::string, std::string>> webhook_headers(const WebhookEndpoint& endpoint,
                                                                 const std::string& event_id, const std::string& body,
                                                                 std::chrono::system_clock::time_point now);

}  // namespace sb
