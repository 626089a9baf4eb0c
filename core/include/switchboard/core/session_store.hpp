#pragma once
// Sessions (messaging accounts) of tenants: provider, placement, status with history, the QR
// shown while pairing, credentials sealed at rest (core/secret_box.hpp).
//
// Statuses: STOPPED → STARTING → SCAN_QR_CODE → WORKING, FAILED (with a reason), and UNKNOWN
// for a word a provider adds (its own word kept as raw_status). A status change applies only
// if it is not older than the current one (callbacks arrive out of order); history keeps all.
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/core/pg.hpp"

namespace sb {

struct SessionStatusChange {
  std::string status;
  std::optional<std::string> raw_status, reason;
  std::string at;  // RFC 3339
};

struct SessionRecord {
  std::string tenant_id, name, provider, status, status_at, created_at, updated_at;
  std::optional<std::string> raw_status, reason, node, engine_name, phone_number_id, account;
  nlohmann::json config = nlohmann::json::object();  // non-secret settings
  std::optional<std::string> secrets;                 // base64 of the sealed JSON (SecretBox), never shown
  std::optional<std::string> qr_value, qr_png, qr_at;
  bool deleting = false;
  int64_t generation = 0;                     // placement fencing token (core/node_registry.hpp)
  std::optional<std::string> storage_group;   // engine sessions: the group holding its auth
};

struct NewSession {
  std::string tenant_id, name, provider;
  nlohmann::json config = nlohmann::json::object();
  std::optional<std::string> secrets, node, engine_name, phone_number_id;  // secrets: base64 of sealed JSON
  std::string status = "STOPPED";
  std::optional<std::string> storage_group;
  int64_t generation = 0;
  // Placed on a node: whether it takes a capacity slot now (created to start) or only at its
  // first start (created with start: false). Migration 012.
  bool holds_slot = true;
};

// Our word for a provider's status: one of ours, or UNKNOWN.
std::string normalize_session_status(const std::string& provider_status);
// The name a session has on an engine node: stable (it keys the auth the engine stores) and
// unique across tenants.
std::string engine_session_name(const std::string& tenant_id, const std::string& session);

class SessionStore {
 public:
  explicit SessionStore(pg::Pool& pool) : pool_(pool) {}

  // Throws Conflict when the tenant has a session of that name (or the Cloud API number is
  // another session's), InvalidInput for a bad name.
  // `place`, when given, runs inside the creating transaction before the insert (engine
  // sessions pick their node there: core/node_registry.hpp) and may fill node/generation.
  void create(const NewSession& s, const std::function<void(pqxx::work&, NewSession&)>& place = {});
  std::optional<SessionRecord> get(const std::string& tenant_id, const std::string& name);
  std::vector<SessionRecord> list(const std::string& tenant_id);
  std::vector<SessionStatusChange> history(const std::string& tenant_id, const std::string& name, int limit = 100);

  // Records a status reported at `at` (RFC 3339). Returns the previous status when this
  // changed the session's status; nullopt when it did not (same status, older than the
  // current one, or no such session) — the history row is written either way (if the session
  // exists). `account` is set when given; clear_account forgets it (logout).
  struct Applied {
    bool exists = false;
    bool stale = false;                   // refused: the session's generation moved on
    std::optional<std::string> previous;  // set when the status changed
    bool pause_kept = false;              // a provider's WORKING/STARTING left a PAUSED session paused
  };
  // `generation`, when given, fences the write: a session re-placed since (another generation)
  // is left as it is (Applied.stale), nothing recorded.
  // `from_provider`: the engine's own report (a status webhook). A PAUSED session stays PAUSED
  // when its engine reports WORKING or STARTING — the pause is pacing's (a ban signal), not the
  // engine's, and ends at its cool-down or POST …/resume; the engine's word is kept as
  // raw_status and in the history. Any other report (STOPPED, FAILED, a QR) replaces the pause:
  // the session can't send either way, and the user has to act.
  Applied set_status(const std::string& tenant_id, const std::string& name, const SessionStatusChange& change,
                     const std::optional<std::string>& account = std::nullopt, bool clear_account = false,
                     std::optional<int64_t> generation = std::nullopt, bool from_provider = false);
  void set_qr(const std::string& tenant_id, const std::string& name, const std::string& value, const std::string& png_base64);
  // DELETE /v1/sessions/{id}: sends are refused from now on; the worker removes the row.
  bool mark_deleting(const std::string& tenant_id, const std::string& name);
  void remove(const std::string& tenant_id, const std::string& name);

  struct Owner {
    std::string tenant_id, name;
    int64_t generation = 0;  // the placement when found (engine sessions)
  };
  std::optional<Owner> find_by_engine_name(const std::string& node, const std::string& engine_name);
  std::optional<Owner> find_by_phone_number_id(const std::string& phone_number_id);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
