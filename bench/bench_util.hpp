#pragma once
// Small helpers every benchmark uses: knobs from the environment, durations, percentiles.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

namespace sbbench {

using Clock = std::chrono::steady_clock;

// An integer knob (SB_BENCH_…) or its default.
inline int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : def;
}

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// p in [0, 1]; 0 for no samples.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Polls until f() is true or the timeout passes; returns f()'s last value.
inline bool eventually(const std::function<bool()>& f, int timeout_ms, int step_ms = 50) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
  return f();
}

}  // namespace sbbench
