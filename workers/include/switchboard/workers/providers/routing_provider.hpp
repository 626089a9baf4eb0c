#pragma once
// One Provider for a lane worker: each send goes to the adapter its session's row names
// (SendRequest::route.provider): the simulator's direct API, an engine node, or the Cloud API.
#include <memory>

#include "switchboard/core/config.hpp"

#include "switchboard/workers/provider.hpp"

namespace sb {

class RoutingProvider : public Provider {
 public:
  RoutingProvider(std::unique_ptr<Provider> simulator, std::unique_ptr<Provider> engine, std::unique_ptr<Provider> cloud_api)
      : simulator_(std::move(simulator)), engine_(std::move(engine)), cloud_api_(std::move(cloud_api)) {}
  using Provider::send;
  void send(const SendRequest& request, SendDone done) override { pick(request).send(request, std::move(done)); }
  void reconcile(const SendRequest& request, ReconcileDone done) override { pick(request).reconcile(request, std::move(done)); }
  std::string name() const override { return "routing"; }

 private:
  Provider& pick(const SendRequest& r) {
    if (r.route.provider == "engine") return *engine_;
    if (r.route.provider == "cloud_api") return *cloud_api_;
    return *simulator_;
  }
  std::unique_ptr<Provider> simulator_, engine_, cloud_api_;
};

// The provider a lane worker uses: the simulator's direct API (provider.url), every configured
// engine node, and the Cloud API.
std::unique_ptr<Provider> make_session_provider(const Config& config);

}  // namespace sb
