#include "switchboard/core/node_registry.hpp"

#include <map>

#include "switchboard/core/base64.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

constexpr const char* kNodeColumns = R"SQL(
  n.name, n.url, n.source, n.storage_group, n.health, n.capacity,
  -- Placed on it, plus moves off it not finished (still stopping there): a drained node is one
  -- where both are none.
  ((SELECT count(*) FROM sessions s WHERE s.node = n.name) +
   (SELECT count(*) FROM session_moves m WHERE m.from_node = n.name AND m.to_node <> n.name))::int, n.failures, n.draining,
  to_char(n.drained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  to_char(n.health_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), n.placed)SQL";

std::optional<std::string> opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

NodeInfo info_from(const pqxx::row& r) {
  NodeInfo n;
  n.name = r[0].as<std::string>();
  n.url = r[1].as<std::string>();
  n.source = r[2].as<std::string>();
  n.storage_group = r[3].as<std::string>();
  n.health = r[4].as<std::string>();
  n.capacity = r[5].as<int>();
  n.sessions = r[6].as<int>();
  n.failures = r[7].as<int>();
  n.draining = r[8].as<bool>();
  n.drained_at = opt(r[9]);
  n.health_at = opt(r[10]);
  n.slots = r[11].as<int>();
  return n;
}

std::string sealed_binding(const std::string& node) { return "engine-node/" + node; }

}  // namespace

std::string seal_node_secrets(const SecretBox& box, const std::string& node, const nlohmann::json& secrets) {
  return base64_encode(box.seal(secrets.dump(), sealed_binding(node)));
}

nlohmann::json open_node_secrets(const SecretBox& box, const std::string& node, const std::string& stored) {
  std::string sealed, why;
  if (stored.empty()) throw InvalidInput("engine node '" + node + "' has no stored credentials");
  if (!base64_decode(stored, sealed, why)) throw InvalidInput("engine node '" + node + "': stored credentials " + why);
  return nlohmann::json::parse(box.open(sealed, sealed_binding(node)));
}

std::optional<std::string> choose_node(const std::vector<PlacementCandidate>& candidates) {
  const PlacementCandidate* best = nullptr;
  for (const auto& c : candidates) {
    const int free = c.capacity - c.placed;
    if (free <= 0) continue;
    if (!best || free > best->capacity - best->placed || (free == best->capacity - best->placed && c.name < best->name))
      best = &c;
  }
  if (!best) return std::nullopt;
  return best->name;
}

NodeRegistry::NodeRegistry(pg::Pool& pool, const EngineConfig& config, SecretBox secrets)
    : pool_(pool), config_(config), secrets_(std::move(secrets)) {}

void NodeRegistry::validate_name(const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != std::string::npos)
    throw InvalidInput("node name '" + name + "' is invalid: use 1-64 of A-Z, a-z, 0-9, '_', '-' (it is part of the callback URL)", "name");
}

void NodeRegistry::register_config_nodes() {
  if (config_.nodes.empty()) return;
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    for (const auto& [name, n] : config_.nodes)
      tx.exec_params(R"SQL(
        INSERT INTO engine_nodes (name, url, source, capacity, storage_group) VALUES ($1, $2, 'config', $3, $4)
        ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, capacity = EXCLUDED.capacity,
          storage_group = EXCLUDED.storage_group, updated_at = now()
        WHERE engine_nodes.source = 'config'
          AND (engine_nodes.url, engine_nodes.capacity, engine_nodes.storage_group)
              IS DISTINCT FROM (EXCLUDED.url, EXCLUDED.capacity, EXCLUDED.storage_group))SQL",
                     name, n.url, n.capacity, n.storage_group);
    tx.commit();
  });
}

void NodeRegistry::add(const NewNode& n) {
  validate_name(n.name);
  if (n.url.rfind("http://", 0) != 0 && n.url.rfind("https://", 0) != 0)
    throw InvalidInput("node url must be an http:// or https:// URL, got '" + n.url + "'", "url");
  if (n.capacity < 0) throw InvalidInput("capacity must be 0 or more sessions", "capacity");
  if (n.storage_group.empty() || n.storage_group.size() > 64) throw InvalidInput("group must be 1-64 characters", "group");
  if (n.webhook_hmac_key.empty())
    throw InvalidInput("a webhook HMAC key is needed: the node's callbacks are verified with it (X-Webhook-Hmac)",
                       "webhook_hmac_key");
  if (!secrets_.usable())
    throw InvalidInput("this deployment cannot store node credentials: secrets.key is not configured");
  const auto sealed = seal_node_secrets(secrets_, n.name, {{"api_key", n.api_key}, {"webhook_hmac_key", n.webhook_hmac_key}});
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params(R"SQL(
      INSERT INTO engine_nodes (name, url, source, secrets, capacity, storage_group) VALUES ($1, $2, 'api', $3, $4, $5)
      ON CONFLICT (name) DO NOTHING RETURNING name)SQL",
                            n.name, n.url, sealed, n.capacity, n.storage_group);
    if (r.empty()) throw Conflict("engine node '" + n.name + "' exists already");
    tx.commit();
  });
  log::info("node.added", {{"node", n.name}, {"url", n.url}, {"capacity", std::to_string(n.capacity)}, {"group", n.storage_group}});
}

std::vector<NodeInfo> NodeRegistry::list() {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<NodeInfo> out;
    for (const auto& row : tx.exec(std::string("SELECT ") + kNodeColumns + " FROM engine_nodes n ORDER BY n.name"))
      out.push_back(info_from(row));
    return out;
  });
}

std::optional<NodeInfo> NodeRegistry::get(const std::string& name) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<NodeInfo> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params(std::string("SELECT ") + kNodeColumns + " FROM engine_nodes n WHERE n.name = $1", name);
    if (r.empty()) return std::nullopt;
    return info_from(r[0]);
  });
}

std::optional<EngineNode> NodeRegistry::engine_node(const std::string& name) {
  auto row = pool_.run([&](pqxx::connection& c) -> std::optional<pqxx::row> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT name, url, source, secrets, capacity, storage_group FROM engine_nodes WHERE name = $1", name);
    if (r.empty()) return std::nullopt;
    return r[0];
  });
  if (!row) {
    // Not registered (yet): a config node still answers, so a role that started before the
    // registry knew it keeps working.
    if (const EngineNode* n = config_.node(name)) return *n;
    return std::nullopt;
  }
  EngineNode n;
  n.name = (*row)[0].as<std::string>();
  n.url = (*row)[1].as<std::string>();
  n.capacity = (*row)[4].as<int>();
  n.storage_group = (*row)[5].as<std::string>();
  if ((*row)[2].as<std::string>() == "config") {
    const EngineNode* cfg = config_.node(name);
    if (!cfg) return std::nullopt;  // dropped from this process's config: not usable from here
    n.api_key = cfg->api_key;
    n.webhook_hmac_key = cfg->webhook_hmac_key;
    return n;
  }
  auto j = open_node_secrets(secrets_, name, (*row)[3].is_null() ? std::string() : (*row)[3].as<std::string>());
  n.api_key = j.value("api_key", "");
  n.webhook_hmac_key = j.value("webhook_hmac_key", "");
  return n;
}

void NodeRegistry::set_draining(const std::string& name, bool draining) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params(
        "UPDATE engine_nodes SET draining = $2, drained_at = NULL, updated_at = now() WHERE name = $1 RETURNING 1", name, draining);
    if (r.empty()) throw NotFound("engine node '" + name + "' does not exist");
  });
  log::info(draining ? "node.draining" : "node.undrained", {{"node", name}});
}

void NodeRegistry::remove(const std::string& name) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params("SELECT 1 FROM engine_nodes WHERE name = $1 FOR UPDATE", name);
    if (r.empty()) throw NotFound("engine node '" + name + "' does not exist");
    const auto placed = tx.exec_params("SELECT count(*) FROM sessions WHERE node = $1", name)[0][0].as<int>();
    if (placed > 0)
      throw Conflict("engine node '" + name + "' still has " + std::to_string(placed) +
                     " sessions placed on it: drain it first (`switchboard nodes drain " + name + "`)");
    tx.exec_params("DELETE FROM engine_nodes WHERE name = $1", name);
    tx.commit();
  });
  log::info("node.removed", {{"node", name}});
}

std::string NodeRegistry::record_probe(const std::string& name, bool ok, int failure_threshold,
                                       const std::function<void(pqxx::work&)>& fence) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (fence) fence(tx);
    // One statement: the new state and the old one (the sub-select sees the row before the update).
    auto r = tx.exec_params(R"SQL(
      UPDATE engine_nodes n SET
        failures = CASE WHEN $2 THEN 0 ELSE n.failures + 1 END,
        health = CASE WHEN $2 THEN 'healthy' WHEN n.failures + 1 >= $3 THEN 'dead' ELSE n.health END,
        health_at = now()
      FROM (SELECT health FROM engine_nodes WHERE name = $1) old
      WHERE n.name = $1 RETURNING n.health, old.health)SQL",
                            name, ok, failure_threshold);
    tx.commit();
    if (r.empty()) return std::string();
    const auto now = r[0][0].as<std::string>(), before = r[0][1].as<std::string>();
    return now != before && now != "unknown" ? now : std::string();
  });
}

void NodeRegistry::mark_drained(const std::string& name, const std::function<void(pqxx::work&)>& fence) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    if (fence) fence(tx);
    tx.exec_params("UPDATE engine_nodes SET drained_at = now() WHERE name = $1 AND draining AND drained_at IS NULL", name);
    tx.commit();
  });
}

// ------------------------------------------------------------------ placement

namespace {

// Locks the nodes of `group` (all groups when empty) and the `exclude`d ones (a move's source
// among them), all in one statement in name order — every placing transaction takes node locks
// that way, before it writes the session, whose slot-count trigger (migration 012) then only
// touches rows it holds: no two placements wait on each other's locks crosswise. Returns the
// eligible ones (not draining, not dead, not excluded) with the slots each holds.
std::vector<std::pair<PlacementCandidate, std::string>> eligible(pqxx::work& tx, const std::string& group,
                                                                 const std::vector<std::string>& exclude) {
  auto r = tx.exec_params(R"SQL(
    SELECT n.name, n.capacity, n.placed, n.storage_group,
           NOT n.draining AND n.health <> 'dead' AND ($1 = '' OR n.storage_group = $1) AND n.name <> ALL($2::text[])
    FROM engine_nodes n
    WHERE $1 = '' OR n.storage_group = $1 OR n.name = ANY($2::text[])
    ORDER BY n.name FOR UPDATE)SQL",
                          group, pg::array_literal(exclude));
  std::vector<std::pair<PlacementCandidate, std::string>> out;
  for (const auto& row : r)
    if (row[4].as<bool>()) out.push_back({{row[0].as<std::string>(), row[1].as<int>(), row[2].as<int>()}, row[3].as<std::string>()});
  return out;
}

Placement pick(const std::vector<std::pair<PlacementCandidate, std::string>>& nodes, const std::string& group) {
  std::vector<PlacementCandidate> c;
  for (const auto& n : nodes) c.push_back(n.first);
  auto chosen = choose_node(c);
  if (!chosen)
    throw NoCapacity(nodes.empty() ? "no engine node is available" + (group.empty() ? std::string() : " in group '" + group + "'") +
                                         " (none registered, or all dead or draining)"
                                   : "every engine node" + (group.empty() ? std::string() : " of group '" + group + "'") +
                                         " is at capacity");
  for (const auto& n : nodes)
    if (n.first.name == *chosen) return {*chosen, 0, n.second};
  throw Error(ErrorKind::Internal, "placement chose an unknown node");
}

}  // namespace

Placement SessionPlacement::choose(pqxx::work& tx, const std::string& group, const std::optional<std::string>& pinned) {
  if (pinned) {
    auto r = tx.exec_params("SELECT capacity, storage_group, draining, health, placed FROM engine_nodes WHERE name = $1 FOR UPDATE",
                            *pinned);
    if (r.empty()) throw NotFound("unknown engine node '" + *pinned + "'");
    if (r[0][2].as<bool>() || r[0][3].as<std::string>() == "dead")
      throw NoCapacity("engine node '" + *pinned + "' is " + (r[0][2].as<bool>() ? "draining" : "dead"));
    if (r[0][4].as<int>() >= r[0][0].as<int>()) throw NoCapacity("engine node '" + *pinned + "' is at capacity");
    return {*pinned, 1, r[0][1].as<std::string>()};
  }
  // No node at all (for that group): the request can't be served here — not a passing shortage.
  if (tx.exec_params("SELECT 1 FROM engine_nodes WHERE $1 = '' OR storage_group = $1 LIMIT 1", group).empty())
    throw InvalidInput(group.empty() ? "provider 'engine' is not available here: no engine node is registered (switchboard nodes add, or engine.nodes)"
                                     : "no engine node is registered in group '" + group + "'",
                       group.empty() ? "provider" : "config.group");
  auto p = pick(eligible(tx, group, {}), group);
  p.generation = 1;
  return p;
}

std::optional<SessionPlacement::Move> SessionPlacement::move(const std::string& tenant, const std::string& session,
                                                             int64_t expected_generation, const std::string& reason, bool intent,
                                                             const std::function<void(pqxx::work&)>& fence,
                                                             const std::vector<std::string>& avoid, bool take_slot) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<Move> {
    pqxx::work tx(c);
    if (fence) fence(tx);
    auto s = tx.exec_params(
        "SELECT node, generation, storage_group, status FROM sessions WHERE tenant_id = $1 AND name = $2 FOR UPDATE", tenant, session);
    if (s.empty() || s[0][1].as<int64_t>() != expected_generation) return std::nullopt;
    Move m;
    m.from = opt(s[0][0]);
    m.previous_status = s[0][3].as<std::string>();
    const std::string group = s[0][2].is_null() ? std::string() : s[0][2].as<std::string>();
    auto exclude = avoid;
    if (m.from) exclude.push_back(*m.from);
    m.to = pick(eligible(tx, group, exclude), group);
    m.to.generation = expected_generation + 1;
    const bool running = m.previous_status == "WORKING" || m.previous_status == "STARTING" || m.previous_status == "SCAN_QR_CODE";
    tx.exec_params(R"SQL(
      UPDATE sessions SET node = $3, generation = $4, storage_group = $5, updated_at = now(),
        holds_slot = holds_slot OR $8,
        status = CASE WHEN $6 THEN 'STARTING' ELSE status END,
        reason = CASE WHEN $6 THEN $7 ELSE reason END,
        raw_status = CASE WHEN $6 THEN NULL ELSE raw_status END,
        status_at = CASE WHEN $6 THEN greatest(now(), status_at) ELSE status_at END,
        qr_value = CASE WHEN $6 THEN NULL ELSE qr_value END, qr_png = CASE WHEN $6 THEN NULL ELSE qr_png END
      WHERE tenant_id = $1 AND name = $2)SQL",
                   tenant, session, m.to.node, m.to.generation, m.to.storage_group, running, reason, take_slot);
    if (running)
      tx.exec_params("INSERT INTO session_status_history (tenant_id, session, status, reason, at) VALUES ($1, $2, 'STARTING', $3, now())",
                     tenant, session, reason);
    if (intent)
      tx.exec_params(R"SQL(
        INSERT INTO session_moves (tenant_id, session, from_node, to_node, generation, reason) VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, session) DO UPDATE SET from_node = EXCLUDED.from_node, to_node = EXCLUDED.to_node,
          generation = EXCLUDED.generation, reason = EXCLUDED.reason, created_at = now())SQL",
                     tenant, session, m.from, m.to.node, m.to.generation, reason);
    tx.commit();
    return m;
  });
}

SessionPlacement::Slot SessionPlacement::take_slot(const std::string& tenant, const std::string& session,
                                                   int64_t expected_generation) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto s = tx.exec_params("SELECT node, generation, holds_slot FROM sessions WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
                            tenant, session);
    if (s.empty() || s[0][1].as<int64_t>() != expected_generation) return Slot::Stale;
    if (s[0][0].is_null()) return Slot::Full;
    if (s[0][2].as<bool>()) return Slot::Held;
    // The node's row locked: no concurrent placement or start takes the last slot under us.
    auto n = tx.exec_params("SELECT capacity, placed, draining, health FROM engine_nodes WHERE name = $1 FOR UPDATE",
                            s[0][0].as<std::string>());
    if (n.empty() || n[0][2].as<bool>() || n[0][3].as<std::string>() == "dead" || n[0][1].as<int>() >= n[0][0].as<int>())
      return Slot::Full;
    tx.exec_params("UPDATE sessions SET holds_slot = true WHERE tenant_id = $1 AND name = $2", tenant, session);
    tx.commit();
    return Slot::Taken;
  });
}

}  // namespace sb
