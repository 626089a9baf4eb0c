#pragma once
// Sends deliveries concurrently (one curl multi handle: many requests in flight, connections
// reused) while keeping endpoints apart: each endpoint has its own concurrency cap, its own
// waiting line and its own circuit breaker, so a slow or dead endpoint only delays itself.
// A delivery that can't go out soon (breaker open, waiting line full) comes back un-attempted,
// to be parked in the durable schedule.
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/workers/webhooks/circuit_breaker.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"

namespace sb {

class DeliveryEngine {
 public:
  // attempt: nullopt when the delivery was not attempted (park it). Runs on the engine's
  // network thread (or the caller's, for an immediate park): must be quick and must not throw.
  using Done = std::function<void(Delivery, std::optional<DeliveryAttempt>)>;

  DeliveryEngine(const WebhooksConfig& config, const AddressGuard& guard);
  void submit(Delivery delivery, Done done);
  // Seconds a parked delivery should wait before it is looked at again.
  int park_delay_s() const { return config_.breaker_cool_down_s; }
  std::size_t in_flight() const { return http_.in_flight(); }
  // Deliveries attempted or waiting in this engine, not yet reported.
  std::size_t outstanding() const;

 private:
  struct Waiting {
    Delivery delivery;
    Done done;
  };
  struct EndpointState {
    int in_flight = 0;
    std::deque<Waiting> waiting;
    CircuitBreaker breaker;
    explicit EndpointState(CircuitBreaker::Settings s) : breaker(s) {}
  };

  void start(Delivery delivery, Done done);  // with a slot taken
  void finished(const std::string& endpoint_id, bool success);

  const WebhooksConfig& config_;
  CircuitBreaker::Settings breaker_settings_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<EndpointState>> endpoints_;
  std::size_t outstanding_ = 0;
  AsyncHttpClient http_;  // last: destroyed first, so its final callbacks still see the state above
};

}  // namespace sb
