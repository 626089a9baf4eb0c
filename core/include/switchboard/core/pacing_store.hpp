#pragma once
// Pacing overrides and automatic pauses in PostgreSQL (migration 009): tenants.pacing and
// sessions.pacing (JSON objects, see pacing_policy.hpp), sessions.first_working_at (the start
// of a number's warm-up) and sessions.paused_until (when a PAUSED session resumes).
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "switchboard/core/pacing_policy.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

// What the pacer needs of one session.
struct SessionPacing {
  std::string provider;
  std::optional<std::string> phone_number_id;
  nlohmann::json tenant_overrides = nlohmann::json::object(), session_overrides = nlohmann::json::object();
  std::optional<int64_t> first_working_ms;  // Unix ms; null: never WORKING yet
  // defaults ← tenant ← session. A stored override that no longer validates (a range narrowed
  // by an upgrade) is ignored key-less: the defaults hold rather than no pacing at all.
  PacingPolicy effective(const PacingPolicy& defaults) const;
};

class PacingStore {
 public:
  explicit PacingStore(pg::Pool& pool) : pool_(pool) {}

  using Key = std::pair<std::string, std::string>;  // tenant id, session name
  // One query for all of `keys`; sessions that don't exist are absent from the answer.
  std::map<Key, SessionPacing> load(const std::vector<Key>& keys);

  // Replace the stored overrides (validated first: InvalidInput). false: no such session.
  bool set_session(const std::string& tenant_id, const std::string& name, const nlohmann::json& overrides);
  nlohmann::json tenant(const std::string& tenant_id);
  void set_tenant(const std::string& tenant_id, const nlohmann::json& overrides);

  // A PAUSED session resumes at `until` (Unix ms). Only while it is PAUSED.
  void set_paused_until(const std::string& tenant_id, const std::string& name, int64_t until_ms);
  std::optional<std::string> paused_until(const std::string& tenant_id, const std::string& name);  // RFC 3339

  // PAUSED sessions whose cool-down has passed go back to WORKING (history written), at most
  // `limit` per call; several workers may call this at once: each session is resumed once.
  struct Resumed {
    std::string tenant_id, name, at;
    std::optional<std::string> account;
  };
  std::vector<Resumed> resume_due(int limit);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
