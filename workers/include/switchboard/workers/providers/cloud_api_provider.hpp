#pragma once
// Sends through the WhatsApp Cloud API (Meta Graph): POST {graph_url}/{version}/{phone_number_id}/messages
// with the session's bearer token (sealed at rest, opened per call). Errors are judged by the
// Graph error `code`, not only the HTTP status:
//   130429 throughput exceeded → back off (retryable, not sent)
//   131056 pair rate limit     → retry this recipient later (retryable, ~6 s)
//   131048 spam rate limit, 368 policy block → rejected, and the session pauses (pause_reason)
//   131026 undeliverable        → rejected (permanent for that recipient)
//   190 bad token, 100 bad parameter → rejected
// Cloud API has no lookup by our id: reconcile() answers Unknown.
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/core/secret_box.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

class CloudApiProvider : public Provider {
 public:
  CloudApiProvider(const CloudApiConfig& config, SecretBox secrets);
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override;
  std::string name() const override { return "cloud_api"; }

  // The SendResult for a Graph answer (exposed for unit tests of the code mapping).
  static SendResult interpret(const HttpResponse& resp, const std::string& where);

 private:
  const CloudApiConfig& config_;
  SecretBox secrets_;
  AsyncHttpClient client_;
};

}  // namespace sb
