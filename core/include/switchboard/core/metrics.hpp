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
#include <string>

namespace sb::metrics {

// The process-wide registry. Families are created once (Build… returns a reference that stays
// valid for the process's life); adding a labelled child is thread-safe.
prometheus::Registry& registry();

// The registry in Prometheus text format (0.0.4).
std::string render();

// Latency buckets in seconds, 1 ms to 30 s: HTTP handlers, provider calls, webhook deliveries.
const prometheus::Histogram::BucketBoundaries& latency_buckets();

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sb::metrics
