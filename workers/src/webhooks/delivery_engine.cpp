#include "switchboard/workers/webhooks/delivery_engine.hpp"

#include <algorithm>
#include <chrono>

#include "switchboard/core/log.hpp"
#include "switchboard/core/metrics.hpp"

namespace sb {

namespace {

// A delivery parked only because its endpoint's line was full is looked at again this soon.
constexpr int kLineFullParkS = 1;

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
  // The engine never has more than max_in_flight transfers, so none waits inside curl.
  o.max_total_connections = c.max_in_flight;
  o.max_host_connections = 0;  // per-endpoint caps are ours (an endpoint is a URL, not a host)
  o.max_connects = c.max_in_flight;
  o.guard = &guard;
  o.user_agent = "switchboard-webhooks";
  return o;
}

}  // namespace

static prometheus::Family<prometheus::Histogram>& delivery_latency();

// Endpoints by breaker state, and how often breakers opened (a probe that failed re-opens).
static prometheus::Family<prometheus::Gauge>& webhook_breaker_gauges() {
  static auto& family = prometheus::BuildGauge()
                            .Name("sb_webhook_breakers")
                            .Help("Webhook endpoints (known to this dispatcher) by circuit-breaker state: closed, open, half_open.")
                            .Register(metrics::registry());
  return family;
}
static prometheus::Counter& webhook_breaker_opened() {
  static auto& counter = prometheus::BuildCounter()
                             .Name("sb_webhook_breaker_opened_total")
                             .Help("Times an endpoint's circuit breaker opened (failure ratio reached, or a half-open probe failed).")
                             .Register(metrics::registry())
                             .Add({});
  return counter;
}

DeliveryEngine::DeliveryEngine(const WebhooksConfig& config, const AddressGuard& guard,
                               std::chrono::milliseconds max_line_wait, Now now)
    : config_(config),
      max_line_wait_(max_line_wait.count() > 0 ? max_line_wait : std::chrono::milliseconds(config.timeout_ms)),
      now_(std::move(now)),
      breaker_settings_(breaker_settings(config)),
      http_(http_options(config, guard)) {
  // Series exist from the start (prometheus-cpp leaves a family without any out of /metrics).
  for (const char* verdict : {"delivered", "retry", "gone"}) delivery_latency().Add({{"verdict", verdict}}, metrics::latency_buckets());
  for (const char* state : {"closed", "open", "half_open"}) webhook_breaker_gauges().Add({{"state", state}});
  webhook_breaker_opened();
}

void DeliveryEngine::refresh_breaker_metrics() const {
  double closed = 0, open = 0, half_open = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = now_();
    for (const auto& [id, st] : endpoints_) {
      switch (st->breaker.state(now)) {
        case CircuitBreaker::State::Closed: ++closed; break;
        case CircuitBreaker::State::Open: ++open; break;
        case CircuitBreaker::State::HalfOpen: ++half_open; break;
      }
    }
  }
  webhook_breaker_gauges().Add({{"state", "closed"}}).Set(closed);
  webhook_breaker_gauges().Add({{"state", "open"}}).Set(open);
  webhook_breaker_gauges().Add({{"state", "half_open"}}).Set(half_open);
}

std::size_t DeliveryEngine::outstanding() const {
  std::lock_guard lock(mu_);
  return outstanding_;
}

int DeliveryEngine::park_delay_s(const std::string& endpoint_id) const {
  std::lock_guard lock(mu_);
  auto it = endpoints_.find(endpoint_id);
  if (it == endpoints_.end()) return kLineFullParkS;
  const auto left = it->second->breaker.remaining_open(now_());
  if (left <= CircuitBreaker::Clock::duration::zero()) return kLineFullParkS;
  return std::max(kLineFullParkS, static_cast<int>(std::chrono::ceil<std::chrono::seconds>(left).count()));
}

DeliveryEngine::EndpointState& DeliveryEngine::state(const std::string& endpoint_id) {
  auto& slot = endpoints_[endpoint_id];
  if (!slot) slot = std::make_unique<EndpointState>(breaker_settings_);
  return *slot;
}

bool DeliveryEngine::has_room(const EndpointState& st) const {
  return st.in_flight < config_.max_in_flight_per_endpoint && total_in_flight_ < config_.max_in_flight;
}

void DeliveryEngine::submit(Delivery delivery, Done done) {
  const auto now = now_();
  Plan plan;
  {
    std::lock_guard lock(mu_);
    const std::string id = delivery.endpoint.id;
    EndpointState& st = state(id);
    if (st.waiting.size() >= static_cast<std::size_t>(config_.max_queued_per_endpoint)) {
      plan.park.push_back({std::move(delivery), std::move(done)});  // line full: park, don't wait
    } else {
      ++outstanding_;
      st.waiting.push_back({std::move(delivery), std::move(done), now});
      refill(id, st, plan, now);
    }
  }
  carry_out(plan);
}

void DeliveryEngine::refill(const std::string& endpoint_id, EndpointState& st, Plan& plan,
                            CircuitBreaker::Clock::time_point now) {
  // Live deliveries that waited too long go to the schedule: each holds its event's offset, and
  // a slow-but-successful endpoint would otherwise hold the commit point for
  // ~max_queued_per_endpoint x timeout / cap (C10). The line is FIFO, so the expired ones are a
  // prefix; scheduled deliveries (they hold only a lease) keep their place.
  if (!st.waiting.empty() && now - st.waiting.front().since >= max_line_wait_) {
    std::deque<Waiting> keep;
    while (!st.waiting.empty() && now - st.waiting.front().since >= max_line_wait_) {
      auto& w = st.waiting.front();
      if (w.delivery.live()) {
        plan.park.push_back(std::move(w));
        --outstanding_;
      } else {
        keep.push_back(std::move(w));
      }
      st.waiting.pop_front();
    }
    for (auto it = keep.rbegin(); it != keep.rend(); ++it) st.waiting.push_front(std::move(*it));
  }
  while (!st.waiting.empty() && has_room(st)) {
    if (!st.breaker.allow(now)) {
      // Open (or its one probe is out): park the whole line rather than hold it here.
      for (auto& w : st.waiting) plan.park.push_back(std::move(w));
      outstanding_ -= st.waiting.size();
      st.waiting.clear();
      return;
    }
    ++st.in_flight;
    ++total_in_flight_;
    plan.start.push_back(std::move(st.waiting.front()));
    st.waiting.pop_front();
  }
  // Held back by the process-wide cap only: take a turn when a slot frees up.
  if (!st.waiting.empty() && st.in_flight < config_.max_in_flight_per_endpoint && !st.starved) {
    st.starved = true;
    starved_.push_back(endpoint_id);
  }
}

void DeliveryEngine::carry_out(Plan& plan) {
  for (auto& w : plan.park) w.done(std::move(w.delivery), std::nullopt);
  for (auto& w : plan.start) start(std::move(w.delivery), std::move(w.done));
}

// Webhook attempts by verdict (delivered, retry, gone): latency from submit to the answer.
static prometheus::Family<prometheus::Histogram>& delivery_latency() {
  static auto& family = prometheus::BuildHistogram()
                            .Name("sb_webhook_delivery_duration_seconds")
                            .Help("Webhook delivery attempts by verdict (delivered, retry, gone), submit to answer.")
                            .Register(metrics::registry());
  return family;
}

static void observe_delivery(const DeliveryAttempt& a, std::chrono::steady_clock::time_point t0) {
  auto& family = delivery_latency();
  const char* verdict = a.verdict == DeliveryAttempt::Verdict::Delivered ? "delivered"
                        : a.verdict == DeliveryAttempt::Verdict::Gone    ? "gone"
                                                                         : "retry";
  family.Add({{"verdict", verdict}}, metrics::latency_buckets()).Observe(metrics::seconds_since(t0));
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
    const std::string id = delivery.endpoint.id;
    finished(id, false, std::move(delivery), std::move(a), done);
    return;
  }
  auto shared = std::make_shared<Waiting>(Waiting{std::move(delivery), std::move(done)});
  const auto t0 = std::chrono::steady_clock::now();
  http_.submit(std::move(req), [this, shared, t0](HttpResponse response) {
    DeliveryAttempt a = classify(response);
    observe_delivery(a, t0);
    const bool ok = a.verdict == DeliveryAttempt::Verdict::Delivered;
    const std::string id = shared->delivery.endpoint.id;
    finished(id, ok, std::move(shared->delivery), std::move(a), shared->done);
  });
}

void DeliveryEngine::finished(const std::string& endpoint_id, bool success, Delivery delivery,
                              std::optional<DeliveryAttempt> attempt, Done& done) {
  const auto now = now_();
  Plan plan;
  {
    std::lock_guard lock(mu_);
    --total_in_flight_;
    EndpointState& st = state(endpoint_id);
    --st.in_flight;
    const bool was_open = st.breaker.state(now) == CircuitBreaker::State::Open;
    st.breaker.record(success, now);
    if (!was_open && st.breaker.state(now) == CircuitBreaker::State::Open) {
      webhook_breaker_opened().Increment();
      log::warn("webhooks.breaker_opened", {{"tenant", delivery.endpoint.tenant_id}, {"endpoint", endpoint_id},
                                            {"open_s", std::to_string(std::chrono::ceil<std::chrono::seconds>(
                                                                          st.breaker.remaining_open(now)).count())}});
    }
    refill(endpoint_id, st, plan, now);
    // Freed process-wide slots go to the endpoints that were waiting for one, in turn.
    while (total_in_flight_ < config_.max_in_flight && !starved_.empty()) {
      const std::string next = std::move(starved_.front());
      starved_.pop_front();
      EndpointState& other = state(next);
      other.starved = false;
      refill(next, other, plan, now);
    }
    if (st.in_flight == 0 && st.waiting.empty() && !st.starved &&
        st.breaker.state(now) == CircuitBreaker::State::Closed && endpoints_.size() > 10000)
      endpoints_.erase(endpoint_id);  // bound the map; a fresh breaker for an idle healthy endpoint is fine
  }
  done(std::move(delivery), std::move(attempt));
  {
    // After the report: a caller waiting for outstanding() == 0 (the dispatcher's stop) sees
    // every result already handed on.
    std::lock_guard lock(mu_);
    --outstanding_;
  }
  carry_out(plan);
}

}  // namespace sb
