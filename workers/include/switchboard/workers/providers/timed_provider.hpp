#pragma once
// Wraps one provider adapter and records every call in prometheus-cpp families: send latency
// by adapter and outcome (sb_provider_call_duration_seconds{adapter,call,outcome}). A decorator,
// so the adapters and the lane core stay as they are.
#include <memory>
#include <string>

#include "switchboard/workers/provider.hpp"

namespace sb {

class TimedProvider : public Provider {
 public:
  // adapter: the label value (simulator | engine | cloud_api).
  TimedProvider(std::string adapter, std::unique_ptr<Provider> inner);
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override;
  void reconcile(const SendRequest& request, ReconcileDone done) override;
  std::string name() const override { return inner_->name(); }

 private:
  std::string adapter_;
  std::unique_ptr<Provider> inner_;
};

}  // namespace sb
