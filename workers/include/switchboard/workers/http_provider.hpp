#pragma once
#include <memory>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

// Speaks the simulator's provider API (see simulator.hpp) over libcurl's multi interface: one
// loop thread, keep-alive connections, thousands of calls in flight.
// 2xx → Sent; 429/503 and refused connections → RetryableError (not delivered); timeouts after
// the request went out and other 5xx/408 → RetryableError (maybe delivered); other 4xx →
// Rejected. reconcile() asks GET /v1/messages/{id} when provider.reconcile is on.
class HttpProvider : public Provider {
 public:
  explicit HttpProvider(const ProviderConfig& config);
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override;
  void reconcile(const SendRequest& request, ReconcileDone done) override;
  std::string name() const override { return "http"; }

 private:
  ProviderConfig config_;
  std::string base_;
  AsyncHttpClient client_;
};

}  // namespace sb
