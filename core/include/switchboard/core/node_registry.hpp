#pragma once
// The engine-node registry (PostgreSQL engine_nodes) and session placement on it.
//
// A node has a URL, credentials (API key, webhook HMAC key), a capacity (max sessions placed
// on it), a storage group (nodes of a group share session auth storage: a session may restart
// on any of them without a new QR; across groups it must pair again), a draining flag and a
// health state the placer keeps ('unknown' until probed, 'healthy', 'dead').
//
// Nodes come from two places: engine.nodes in config (registered at start as source 'config';
// their credentials stay in config and are never stored) and `switchboard nodes add` /
// POST /v1/admin/nodes (source 'api'; credentials sealed under secrets.key, bound to the node's
// name).
//
// Placement: a session goes to the eligible node (not dead, not draining) of its group with the
// most free capacity (capacity - slots held there), ties broken by name, so the choice is
// stable. Placing locks the group's node rows (FOR UPDATE), so concurrent placers never put
// more sessions on a node than its capacity. The slots held are engine_nodes.placed, kept by
// triggers on sessions (migration 012, which says why): a session holds a slot from its
// placement until it is STOPPED or FAILED; a start of a STOPPED/FAILED session takes one again
// (take_slot), re-placed in its group when its node has no room. Every (re)placement bumps sessions.generation: the
// fencing token engine calls carry (X-Switchboard-Generation) and placement writes compare.
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/secret_box.hpp"

namespace sb {

// Every engine call carries the session placement's generation in this header. The simulator's
// engine shape refuses an older generation than one it has seen for the session (409); real
// WAHA ignores the header — there, the PostgreSQL fence (placement writes compare the
// generation, callbacks are matched to the session's current node) is what protects state.
inline constexpr const char* kGenerationHeader = "X-Switchboard-Generation";

// A registered node's credentials as stored in engine_nodes.secrets (base64 of sealed
// {"api_key","webhook_hmac_key"}, bound to the node's name). Throws InvalidInput.
std::string seal_node_secrets(const SecretBox& box, const std::string& node, const nlohmann::json& secrets);
nlohmann::json open_node_secrets(const SecretBox& box, const std::string& node, const std::string& stored);

// No eligible node of the group has room: a clear refusal (503 / session FAILED no_capacity).
struct NoCapacity : Error {
  explicit NoCapacity(const std::string& m) : Error(ErrorKind::Unavailable, m) {}
};

struct NodeInfo {
  std::string name, url, source, storage_group, health;
  int capacity = 0, sessions = 0, failures = 0;
  int slots = 0;  // capacity slots held (sessions placed here and not STOPPED/FAILED)
  bool draining = false;
  std::optional<std::string> drained_at, health_at;
};

struct NewNode {
  std::string name, url, storage_group = "default", api_key, webhook_hmac_key;
  int capacity = 0;
};

// The placement choice alone (unit-tested): the node with the most free capacity, ties by
// name; nullopt when none has room.
struct PlacementCandidate {
  std::string name;
  int capacity = 0, placed = 0;
};
std::optional<std::string> choose_node(const std::vector<PlacementCandidate>& candidates);

class NodeRegistry {
 public:
  // The secret box opens and seals API nodes' credentials; `config` names the config nodes.
  NodeRegistry(pg::Pool& pool, const EngineConfig& config, SecretBox secrets);

  // Upserts engine.nodes as source 'config' rows (url, capacity, group), leaving draining and
  // health alone. Every role that places or calls engines does this at start.
  void register_config_nodes();

  // Throws InvalidInput (bad name/url/capacity, no secrets.key for credentials), Conflict.
  void add(const NewNode& n);
  std::vector<NodeInfo> list();
  std::optional<NodeInfo> get(const std::string& name);
  // The node with its credentials, for calls and callback verification; nullopt if unknown.
  std::optional<EngineNode> engine_node(const std::string& name);
  // Throws NotFound.
  void set_draining(const std::string& name, bool draining);
  // Throws NotFound, or Conflict while sessions are placed on it (drain it first).
  void remove(const std::string& name);

  // A probe's outcome; the state it moved to when it changed ("dead", "healthy"), else "".
  // `fence` runs first in the writing transaction (the placer checks its lease there; it
  // throws to refuse), so a placer deposed between its probe and this write changes nothing.
  std::string record_probe(const std::string& name, bool ok, int failure_threshold,
                           const std::function<void(pqxx::work&)>& fence = {});
  void mark_drained(const std::string& name, const std::function<void(pqxx::work&)>& fence = {});

  static void validate_name(const std::string& name);

 private:
  pg::Pool& pool_;
  const EngineConfig& config_;
  SecretBox secrets_;
};

// Where a session runs and with which fencing generation.
struct Placement {
  std::string node;
  int64_t generation = 0;
  std::string storage_group;
};

class SessionPlacement {
 public:
  explicit SessionPlacement(pg::Pool& pool) : pool_(pool) {}

  // Inside the transaction creating a session: picks its node (`pinned` if given and it has
  // room, else the best of `group`, or of any group when empty). Throws NoCapacity (every node
  // full, dead or draining), InvalidInput (no node registered at all there), NotFound (pinned
  // node unknown).
  static Placement choose(pqxx::work& tx, const std::string& group, const std::optional<std::string>& pinned);

  // Re-places a session away from its current node (failover, drain, a start finding its node
  // dead or draining): bumps its generation and writes the new node, with the session.status
  // STARTING (reason) in the same transaction and, when `intent` is set, a session_moves row.
  // `fence` runs first in the transaction (the placer checks its lease there; throw to refuse).
  // nullopt when the session is gone or its generation is no longer `expected_generation`
  // (someone else moved it). Throws NoCapacity.
  struct Move {
    Placement to;
    std::optional<std::string> from;
    std::string previous_status;
  };
  // `avoid`: nodes not to choose this time (a drain's targets that are busy). `take_slot`: the
  // session holds a slot on its new node whatever its status (a start re-placing it); else it
  // keeps holding one or not as before (a running session does, a STOPPED one moved by a drain
  // does not).
  std::optional<Move> move(const std::string& tenant, const std::string& session, int64_t expected_generation,
                           const std::string& reason, bool intent, const std::function<void(pqxx::work&)>& fence = {},
                           const std::vector<std::string>& avoid = {}, bool take_slot = false);

  // A start of the session at `expected_generation`: it takes a capacity slot on its node.
  // Held: it holds one already (running, or created to start). Taken: its node is eligible and
  // had room. Full: its node has none (or is dead, draining or gone): re-place it (move with
  // take_slot). Stale: moved or gone meanwhile.
  enum class Slot { Held, Taken, Full, Stale };
  Slot take_slot(const std::string& tenant, const std::string& session, int64_t expected_generation);

 private:
  pg::Pool& pool_;
};

}  // namespace sb
