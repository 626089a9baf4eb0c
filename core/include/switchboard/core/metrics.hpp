#pragma once
// Prometheus metrics through prometheus-cpp (Debian's prometheus-cpp-dev): one registry per
// process that any component registers its families in (histograms, labelled counters and
// gauges), rendered by every /metrics endpoint (intake, and the ops server of workers,
// dispatchers and the callbacks worker) after that process's own hand-written counters. The
// library keeps the exposition format right (escaping, HELP/TYPE once per family, histogram
// buckets, _sum and _count), which `promtool check metrics` verifies in the tests.
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <initializer_list>
#include <map>
#include <string>

namespace sb::metrics {

// The process-wide registry. Families are created once (Build… returns a reference that stays
// valid for the process's life); adding a labelled child is thread-safe.
prometheus::Registry& registry();

// The registry in Prometheus text format (0.0.4).
std::string render();

// Latency buckets in seconds, 1 ms to 30 s: HTTP handlers, provider calls, webhook deliveries.
const prometheus::Histogram::BucketBoundaries& latency_buckets();

// A counter family with one label over a closed set of values (op, kind…): every series is
// created up front, so /metrics shows 0 from the start instead of nothing (prometheus-cpp leaves
// a family without series out). Looking a value up is a read of a map that never changes.
class CounterSet {
 public:
  CounterSet(const std::string& name, const std::string& help, const std::string& label,
             std::initializer_list<const char*> values);
  // The series of `value`, which must be one of the values given (anything else: the first's).
  prometheus::Counter& operator[](const std::string& value) const;

 private:
  std::map<std::string, prometheus::Counter*> series_;
  prometheus::Counter* first_ = nullptr;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sb::metrics
