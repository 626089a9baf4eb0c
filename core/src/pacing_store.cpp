#include "switchboard/core/pacing_store.hpp"

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

using json = nlohmann::json;

namespace {
constexpr const char* kTs = R"(to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))";
std::string ts(const std::string& column) {
  std::string out = kTs;
  return out.replace(out.find("%s"), 2, column);
}
}  // namespace

PacingPolicy SessionPacing::effective(const PacingPolicy& defaults) const {
  PacingPolicy p = defaults;
  for (const json* o : {&tenant_overrides, &session_overrides}) {
    try {
      p = p.merged(*o);
    } catch (const InvalidInput& e) {
      log::warn("pacing.override_ignored", {{"detail", e.what()}});
    }
  }
  return p;
}

std::map<PacingStore::Key, SessionPacing> PacingStore::load(const std::vector<Key>& keys) {
  std::vector<std::string> tenants, names;
  for (const auto& [t, n] : keys) {
    tenants.push_back(t);
    names.push_back(n);
  }
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::map<Key, SessionPacing> out;
    auto r = tx.exec_params(R"SQL(
      SELECT s.tenant_id::text, s.name, s.provider, s.phone_number_id, t.pacing::text, s.pacing::text,
             (extract(epoch FROM s.first_working_at) * 1000)::bigint
      FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, name)
      JOIN sessions s ON s.tenant_id = k.tenant_id AND s.name = k.name
      JOIN tenants t ON t.id = s.tenant_id)SQL",
                            pg::array_literal(tenants), pg::array_literal(names));
    for (const auto& row : r) {
      SessionPacing p;
      p.provider = row[2].as<std::string>();
      if (!row[3].is_null()) p.phone_number_id = row[3].as<std::string>();
      p.tenant_overrides = json::parse(row[4].as<std::string>());
      p.session_overrides = json::parse(row[5].as<std::string>());
      if (!row[6].is_null()) p.first_working_ms = row[6].as<int64_t>();
      out.emplace(Key{row[0].as<std::string>(), row[1].as<std::string>()}, std::move(p));
    }
    return out;
  });
}

bool PacingStore::set_session(const std::string& tenant_id, const std::string& name, const json& overrides) {
  PacingPolicy::validate(overrides);
  const std::string stored = overrides.is_null() ? "{}" : overrides.dump();
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params("UPDATE sessions SET pacing = $3::jsonb, updated_at = now() WHERE tenant_id = $1 AND name = $2 RETURNING 1",
                           tenant_id, name, stored)
                .empty();
  });
}

json PacingStore::tenant(const std::string& tenant_id) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT pacing::text FROM tenants WHERE id = $1", tenant_id);
    return r.empty() ? json::object() : json::parse(r[0][0].as<std::string>());
  });
}

void PacingStore::set_tenant(const std::string& tenant_id, const json& overrides) {
  PacingPolicy::validate(overrides);
  const std::string stored = overrides.is_null() ? "{}" : overrides.dump();
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params("UPDATE tenants SET pacing = $2::jsonb WHERE id = $1", tenant_id, stored);
  });
}

void PacingStore::set_paused_until(const std::string& tenant_id, const std::string& name, int64_t until_ms) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params("UPDATE sessions SET paused_until = to_timestamp($3::bigint / 1000.0) "
                   "WHERE tenant_id = $1 AND name = $2 AND status = 'PAUSED'",
                   tenant_id, name, until_ms);
  });
}

std::optional<std::string> PacingStore::paused_until(const std::string& tenant_id, const std::string& name) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<std::string> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT " + ts("paused_until") + " FROM sessions WHERE tenant_id = $1 AND name = $2", tenant_id, name);
    if (r.empty() || r[0][0].is_null()) return std::nullopt;
    return r[0][0].as<std::string>();
  });
}

std::vector<PacingStore::Resumed> PacingStore::resume_due(int limit) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    std::vector<Resumed> out;
    // SKIP LOCKED: another worker resuming the same rows takes the others; none twice.
    auto r = tx.exec_params(R"SQL(
      UPDATE sessions s SET status = 'WORKING', raw_status = NULL, reason = 'cool_down_elapsed',
             status_at = greatest(now(), s.status_at), updated_at = now()
      FROM (SELECT tenant_id, name FROM sessions WHERE status = 'PAUSED' AND paused_until <= now()
            ORDER BY paused_until LIMIT $1 FOR UPDATE SKIP LOCKED) due
      WHERE s.tenant_id = due.tenant_id AND s.name = due.name
      RETURNING s.tenant_id::text, s.name, s.account, )SQL" + ts("s.status_at"),
                            limit);
    for (const auto& row : r) {
      Resumed x{row[0].as<std::string>(), row[1].as<std::string>(), row[3].as<std::string>(), std::nullopt};
      if (!row[2].is_null()) x.account = row[2].as<std::string>();
      tx.exec_params("INSERT INTO session_status_history (tenant_id, session, status, reason, at) "
                     "VALUES ($1, $2, 'WORKING', 'cool_down_elapsed', $3::timestamptz)",
                     x.tenant_id, x.name, x.at);
      out.push_back(std::move(x));
    }
    tx.commit();
    return out;
  });
}

}  // namespace sb
