#pragma once
#include "switchboard/core/config.hpp"
#include "switchboard/workers/provider.hpp"

namespace sb {

// Speaks the simulator's provider API (see simulator.hpp) over libcurl.
// 2xx → Sent; 408/429/5xx and transport errors → RetryableError; other 4xx → Rejected.
class HttpProvider : public Provider {
 public:
  explicit HttpProvider(const ProviderConfig& config) : config_(config) {}
  SendResult send(const SendRequest& request) override;
  std::string name() const override { return "http"; }

 private:
  ProviderConfig config_;
};

}  // namespace sb
