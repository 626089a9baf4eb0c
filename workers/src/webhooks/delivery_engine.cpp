#include "switchboard/workers/webhooks/delivery_engine.hpp"

#include <vector>

namespace sb {

namespace {

CircuitBreaker::Settings breaker_settings(const WebhooksConfig& c) {
  CircuitBreaker::Settings s;
  s.window = static_cast<std::size_t>(c.breaker_window);
  s.min_attempts = static_cast<std::size_t>(c.breaker_min_attempts);
  s.failure_ratio = c.breaker_failure_ratio;
  s.cool_down = std::chrono::seconds(c.breaker_cool_down_s);
  s.max_cool_down = std::chrono::seconds(std::max(c.breaker_max_cool_down_s, c.breaker_cool_down_s));
  return s;
}

AsyncHttpClient::Options http_options(const WebhooksConfig& c, const AddressGuard& guard) {
  AsyncHttpClient::Options o;
  o.max_total_connections = c.max_in_flight;
  o.max_host_connections = 0;  // per-endpoint caps are ours (an endpoint is a URL, not a host)
  o.max_connects = c.max_in_flight;
  o.guard = &guard;
  o.user_agent = "switchboard-webhooks";
  return o;
}

}  // namespace

DeliveryEngine::DeliveryEngine(const WebhooksConfig& config, const AddressGuard& guard)
    : config_(config), breaker_settings_(breaker_settings(config)), http_(http_options(config, guard)) {}

std::size_t DeliveryEngine::outstanding() const {
  std::lock_guard lock(mu_);
  return outstanding_;
}

void DeliveryEngine::submit(Delivery delivery, Done done) {
  const auto now = CircuitBreaker::Clock::now();
  {
    std::unique_lock lock(mu_);
    auto& slot = endpoints_[delivery.endpoint.id];
    if (!slot) slot = std::make_unique<EndpointState>(breaker_settings_);
    EndpointState& st = *slot;
    const bool full = st.in_flight >= config_.max_in_flight_per_endpoint;
    if (full && st.waiting.size() < static_cast<std::size_t>(config_.max_queued_per_endpoint)) {
      ++outstanding_;
      st.waiting.push_back({std::move(delivery), std::move(done)});
      return;
    }
    if (!full && st.breaker.allow(now)) {
      ++st.in_flight;
      ++outstanding_;
      lock.unlock();
      start(std::move(delivery), std::move(done));
      return;
    }
  }
  // Breaker open or the endpoint's line is full: not attempted, park it.
  done(std::move(delivery), std::nullopt);
}

void DeliveryEngine::start(Delivery delivery, Done done) {
  HttpRequest req;
  req.url = delivery.endpoint.url;
  req.body = *delivery.body;
  req.timeout_ms = config_.timeout_ms;
  req.connect_timeout_ms = std::min(config_.connect_timeout_ms, config_.timeout_ms);
  req.max_body_bytes = 2048;  // only the excerpt is logged
  try {
    req.headers = webhook_headers(delivery.endpoint, delivery.event_id, req.body, std::chrono::system_clock::now());
  } catch (const std::exception& e) {
    // An unusable secret (cannot happen through the API): fail the attempt, don't crash.
    DeliveryAttempt a;
    a.error = std::string("cannot sign: ") + e.what();
    finished(delivery.endpoint.id, false);
    done(std::move(delivery), a);
    return;
  }
  auto shared = std::make_shared<Waiting>(Waiting{std::move(delivery), std::move(done)});
  http_.submit(std::move(req), [this, shared](HttpResponse response) {
    DeliveryAttempt a = classify(response);
    finished(shared->delivery.endpoint.id, a.verdict == DeliveryAttempt::Verdict::Delivered);
    shared->done(std::move(shared->delivery), std::move(a));
  });
}

void DeliveryEngine::finished(const std::string& endpoint_id, bool success) {
  const auto now = CircuitBreaker::Clock::now();
  std::vector<Waiting> to_start, to_park;
  {
    std::lock_guard lock(mu_);
    --outstanding_;
    EndpointState& st = *endpoints_[endpoint_id];
    --st.in_flight;
    st.breaker.record(success, now);
    // Refill the endpoint's slots from its line; when the breaker opened, park the line.
    while (!st.waiting.empty() && st.in_flight < config_.max_in_flight_per_endpoint) {
      if (st.breaker.allow(now)) {
        ++st.in_flight;
        to_start.push_back(std::move(st.waiting.front()));
      } else {
        --outstanding_;
        to_park.push_back(std::move(st.waiting.front()));
      }
      st.waiting.pop_front();
    }
    if (st.in_flight == 0 && st.waiting.empty() && st.breaker.state(now) == CircuitBreaker::State::Closed &&
        endpoints_.size() > 10000)
      endpoints_.erase(endpoint_id);  // bound the map; a fresh breaker for an idle healthy endpoint is fine
  }
  for (auto& w : to_park) w.done(std::move(w.delivery), std::nullopt);
  for (auto& w : to_start) start(std::move(w.delivery), std::move(w.done));
}

}  // namespace sb
