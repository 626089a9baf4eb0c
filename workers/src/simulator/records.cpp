#include "records.hpp"

namespace sb::sim {

void SendLog::record(SendRecord r) {
  std::lock_guard lock(mu_);
  sends_.push_back(std::move(r));
  while (sends_.size() > max_) {
    sends_.pop_front();
    ++dropped_;
  }
}

json SendLog::to_json(const std::string& scope_key, const std::string& value) const {
  json sends = json::array();
  std::lock_guard lock(mu_);
  for (const auto& s : sends_) {
    if (!scope_key.empty() && (s.scope_key != scope_key || s.scope != value)) continue;
    sends.push_back({{"shape", s.shape}, {s.scope_key, s.scope}, {"to", s.to}, {"text", s.text},
                     {"provider_message_id", s.provider_message_id}, {"at_ms", s.at_ms}});
  }
  return {{"sends", std::move(sends)}, {"dropped", dropped_}};
}

void SessionLifetimes::opened(const std::string& session, uint64_t generation) {
  std::lock_guard lock(mu_);
  if (open_.count(session)) return;
  open_[session] = spans_.size();
  spans_.push_back({session, now_ms(), std::nullopt, generation});
}

void SessionLifetimes::closed(const std::string& session) {
  std::lock_guard lock(mu_);
  auto it = open_.find(session);
  if (it == open_.end()) return;
  spans_[it->second].stopped_at_ms = now_ms();
  open_.erase(it);
}

json SessionLifetimes::to_json() const {
  json out = json::array();
  std::lock_guard lock(mu_);
  for (const auto& s : spans_)
    out.push_back({{"session", s.session}, {"node", node_}, {"started_at_ms", s.started_at_ms},
                   {"stopped_at_ms", s.stopped_at_ms ? json(*s.stopped_at_ms) : json(nullptr)}, {"generation", s.generation}});
  return out;
}

}  // namespace sb::sim
