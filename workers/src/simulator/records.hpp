#pragma once
// What tests read back from the simulator: every send as it arrived (GET /sim/log) and when
// each engine session ran on this node (GET /sim/sessions/log).
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"

namespace sb::sim {

struct SendRecord {
  std::string shape;      // "engine" | "cloud_api" | "legacy"
  std::string scope_key;  // "session" | "phone_number_id"
  std::string scope;
  std::string to;
  std::string text;
  std::string provider_message_id;
  int64_t at_ms = 0;
};

// Arrival-ordered, repeats included (nobody dedupes); the newest `max` kept.
class SendLog {
 public:
  explicit SendLog(std::size_t max) : max_(max) {}
  void record(SendRecord r);
  // {"sends": [...], "dropped": N}; filtered by scope_key = value when key is non-empty.
  json to_json(const std::string& scope_key, const std::string& value) const;

 private:
  const std::size_t max_;
  mutable std::mutex mu_;
  std::deque<SendRecord> sends_;
  uint64_t dropped_ = 0;
};

// A span opens when a session starts (STARTING) on this node and closes when it stops, fails or
// is deleted: proof that no session ran on two nodes at once.
class SessionLifetimes {
 public:
  explicit SessionLifetimes(std::string node) : node_(std::move(node)) {}
  void opened(const std::string& session, uint64_t generation = 0);
  void closed(const std::string& session);
  json to_json() const;

 private:
  struct Span {
    std::string session;
    int64_t started_at_ms = 0;
    std::optional<int64_t> stopped_at_ms;
    uint64_t generation = 0;  // the placement it ran with (0: not fenced)
  };
  const std::string node_;
  mutable std::mutex mu_;
  std::vector<Span> spans_;
  std::map<std::string, std::size_t> open_;  // session → index of its open span
};

}  // namespace sb::sim
