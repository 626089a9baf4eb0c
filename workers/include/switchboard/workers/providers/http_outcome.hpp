#pragma once
// How an HTTP provider's answer becomes a SendResult, shared by every adapter: 2xx with an id →
// Sent; 429/503 and refused connections → RetryableError (certainly not sent); timeouts after
// the request went out and other 5xx/408 → RetryableError (maybe sent); other 4xx → Rejected.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "switchboard/core/http_client.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

// The provider's message id in a 2xx body ("" when absent).
using IdOf = std::function<std::string(const nlohmann::json&)>;
// `id_field` names the id in messages ("no <id_field> in the response").
SendResult interpret_send(const HttpResponse& resp, const std::string& where, const IdOf& id_of,
                          const std::string& id_field = "message id");
SendResult result(SendResult::Status status, std::string error, std::string provider_id = {});
bool retryable_status(long status);
// The first 200 bytes of a body, safe for logs and events (valid UTF-8, no control characters).
std::string excerpt(const std::string& body);

}  // namespace sb
