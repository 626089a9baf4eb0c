#include "switchboard/workers/providers/timed_provider.hpp"

#include <chrono>

#include "switchboard/core/metrics.hpp"

namespace sb {
namespace {

prometheus::Family<prometheus::Histogram>& calls() {
  static auto& f = prometheus::BuildHistogram()
                       .Name("sb_provider_call_duration_seconds")
                       .Help("Provider calls from lane workers by adapter, call (send, reconcile) and outcome.")
                       .Register(metrics::registry());
  return f;
}

const char* outcome_of(const SendResult& r) {
  switch (r.status) {
    case SendResult::Status::Sent: return "sent";
    case SendResult::Status::Rejected: return "rejected";
    case SendResult::Status::RetryableError: return r.maybe_delivered ? "uncertain" : "retryable";
  }
  return "retryable";
}

const char* outcome_of(const ReconcileResult& r) {
  switch (r.status) {
    case ReconcileResult::Status::Sent: return "sent";
    case ReconcileResult::Status::NotSent: return "not_sent";
    case ReconcileResult::Status::Unknown: return "unknown";
  }
  return "unknown";
}

}  // namespace

TimedProvider::TimedProvider(std::string adapter, std::unique_ptr<Provider> inner)
    : adapter_(std::move(adapter)), inner_(std::move(inner)) {
  // A series from the start (prometheus-cpp leaves a family without any out of /metrics).
  calls().Add({{"adapter", adapter_}, {"call", "send"}, {"outcome", "sent"}}, metrics::latency_buckets());
}

void TimedProvider::send(const SendRequest& request, SendDone done) {
  const auto t0 = std::chrono::steady_clock::now();
  inner_->send(request, [this, t0, done = std::move(done)](SendResult r) {
    calls().Add({{"adapter", adapter_}, {"call", "send"}, {"outcome", outcome_of(r)}}, metrics::latency_buckets())
        .Observe(metrics::seconds_since(t0));
    done(std::move(r));
  });
}

void TimedProvider::reconcile(const SendRequest& request, ReconcileDone done) {
  const auto t0 = std::chrono::steady_clock::now();
  inner_->reconcile(request, [this, t0, done = std::move(done)](ReconcileResult r) {
    calls().Add({{"adapter", adapter_}, {"call", "reconcile"}, {"outcome", outcome_of(r)}}, metrics::latency_buckets())
        .Observe(metrics::seconds_since(t0));
    done(std::move(r));
  });
}

}  // namespace sb
