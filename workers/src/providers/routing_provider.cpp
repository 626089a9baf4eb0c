#include "switchboard/workers/providers/routing_provider.hpp"

#include "switchboard/workers/http_provider.hpp"
#include "switchboard/workers/providers/cloud_api_provider.hpp"
#include "switchboard/workers/providers/engine_provider.hpp"
#include "switchboard/workers/providers/timed_provider.hpp"

namespace sb {

std::unique_ptr<Provider> make_session_provider(const Config& config) {
  // Each adapter timed by its own label (sb_provider_call_duration_seconds{adapter}).
  return std::make_unique<RoutingProvider>(
      std::make_unique<TimedProvider>("simulator", std::make_unique<HttpProvider>(config.provider)),
      std::make_unique<TimedProvider>("engine", std::make_unique<EngineProvider>(config.engine, SecretBox(config.secrets.key), &config.redis)),
      std::make_unique<TimedProvider>("cloud_api", std::make_unique<CloudApiProvider>(config.cloud_api, SecretBox(config.secrets.key))));
}

}  // namespace sb
