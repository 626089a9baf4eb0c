#pragma once
// Sends deliveries concurrently (one curl multi handle: many requests in flight, connections
// reused) while keeping endpoints apart: each endpoint has its own concurrency cap, its own
// waiting line and its own circuit breaker, so a slow or dead endpoint only delays itself.
// The process-wide cap (webhooks.max_in_flight) is shared fairly: endpoints blocked only by it
// take turns in arrival order. A delivery that can't go out soon (breaker open, line full, or a
// live one that waited in its line longer than max_line_wait) comes back un-attempted, to be
// parked in the durable schedule: a slow endpoint's backlog waits in PostgreSQL, not in memory
// where it would hold its events' Kafka offsets (review C10).
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/workers/webhooks/circuit_breaker.hpp"
#include "switchboard/workers/webhooks/delivery.hpp"

namespace sb {

class DeliveryEngine {
 public:
  // attempt: nullopt when the delivery was not attempted (park it; park_delay_s says for how
  // long). Runs on the engine's network thread (or the caller's, for an immediate park): must
  // be quick and must not throw.
  using Done = std::function<void(Delivery, std::optional<DeliveryAttempt>)>;
  using Clock = CircuitBreaker::Clock;
  using Now = std::function<Clock::time_point()>;

  // max_line_wait: a live delivery (its event's offset waits for it) that waited this long in
  // its endpoint's line is parked instead (0: webhooks.timeout_ms). `now` is injectable for tests.
  DeliveryEngine(const WebhooksConfig& config, const AddressGuard& guard, std::chrono::milliseconds max_line_wait = {},
                 Now now = &Clock::now);
  void submit(Delivery delivery, Done done);
  // Seconds a parked delivery of this endpoint should wait: until its breaker's probe when
  // open, else a moment (its line was only full).
  int park_delay_s(const std::string& endpoint_id) const;
  std::size_t in_flight() const { return http_.in_flight(); }
  // Deliveries attempted or waiting in this engine, not yet reported.
  std::size_t outstanding() const;
  // Sets sb_webhook_breakers{state} (endpoints whose breaker is closed, open or half_open) from
  // the breakers now: called per scrape, since an open breaker turns half-open by the clock,
  // not by an event. O(endpoints in memory, ≤ ~10,000) under the engine's lock. Endpoints are
  // not a label (thousands of them would be thousands of series): the breaker_opened log line
  // names the endpoint and tenant, and `switchboard status` lists failing endpoints.
  void refresh_breaker_metrics() const;

 private:
  struct Waiting {
    Delivery delivery;
    Done done;
    Clock::time_point since{};  // when it joined its endpoint's line
  };
  struct EndpointState {
    int in_flight = 0;
    std::deque<Waiting> waiting;
    bool starved = false;  // queued in starved_: has waiting work held back only by the global cap
    CircuitBreaker breaker;
    explicit EndpointState(CircuitBreaker::Settings s) : breaker(s) {}
  };
  struct Plan {  // decided under the lock, carried out after it
    std::vector<Waiting> start, park;
  };

  EndpointState& state(const std::string& endpoint_id);  // with mu_ held
  bool has_room(const EndpointState& st) const;            // with mu_ held
  // Moves the endpoint's waiting deliveries into free slots (or parks them when the breaker is
  // open); an endpoint held back by the global cap joins starved_. With mu_ held.
  void refill(const std::string& endpoint_id, EndpointState& st, Plan& plan, CircuitBreaker::Clock::time_point now);
  void carry_out(Plan& plan);
  void start(Delivery delivery, Done done);  // with a slot taken
  // An attempt ended: counted (breaker, slots) *before* it is reported, so whoever sees the
  // result also sees its effect on the endpoint; outstanding() drops only after the report.
  void finished(const std::string& endpoint_id, bool success, Delivery delivery, std::optional<DeliveryAttempt> attempt,
                Done& done);

  const WebhooksConfig& config_;
  std::chrono::milliseconds max_line_wait_;
  Now now_;
  CircuitBreaker::Settings breaker_settings_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<EndpointState>> endpoints_;
  std::deque<std::string> starved_;  // endpoints waiting for a process-wide slot, in turn
  std::size_t outstanding_ = 0;
  int total_in_flight_ = 0;
  AsyncHttpClient http_;  // last: destroyed first, so its final callbacks still see the state above
};

}  // namespace sb
