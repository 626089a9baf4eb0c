#include "switchboard/core/metrics.hpp"

#include <prometheus/text_serializer.h>

namespace sb::metrics {

prometheus::Registry& registry() {
  static prometheus::Registry r;  // never destroyed before its users: function-local static
  return r;
}

std::string render() {
  return prometheus::TextSerializer().Serialize(registry().Collect());
}

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                         0.25,  0.5,    1,     2.5,  5,     10,   30};
  return b;
}

CounterSet::CounterSet(const std::string& name, const std::string& help, const std::string& label,
                       std::initializer_list<const char*> values) {
  auto& family = prometheus::BuildCounter().Name(name).Help(help).Register(registry());
  for (const char* v : values) {
    auto* c = &family.Add({{label, v}});
    series_.emplace(v, c);
    if (!first_) first_ = c;
  }
}

prometheus::Counter& CounterSet::operator[](const std::string& value) const {
  auto it = series_.find(value);
  return it == series_.end() ? *first_ : *it->second;
}

}  // namespace sb::metrics
