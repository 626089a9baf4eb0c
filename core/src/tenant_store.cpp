#include "switchboard/core/tenant_store.hpp"

#include <regex>

#include "switchboard/core/ids.hpp"

namespace sb {

bool TenantStore::valid_session_name(const std::string& name) {
  static const std::regex re("^[A-Za-z0-9_.-]{1,64}$");
  return std::regex_match(name, re);
}

std::string TenantStore::insert_key(pqxx::work& tx, const std::string& tenant_id) {
  const auto key = new_secret("sb_live_");
  tx.exec_params("INSERT INTO api_keys (key_hash, tenant_id, prefix) VALUES ($1, $2, $3)", sha256_hex(key),
                 tenant_id, key.substr(0, 12));
  return key;
}

std::pair<Tenant, std::string> TenantStore::create(const std::string& name) {
  static const std::regex re("^[a-z0-9][a-z0-9_-]{0,62}$");
  if (!std::regex_match(name, re))
    throw InvalidInput("tenant name '" + name + "' is invalid: use 1-63 of a-z, 0-9, '_' or '-', starting with a letter or digit", "name");
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    Tenant t{new_uuid_v7(), name};
    auto r = tx.exec_params("INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id", t.id, name);
    if (r.empty()) throw Conflict("tenant '" + name + "' already exists: use `switchboard tenant key " + name + "` for a new key");
    auto key = insert_key(tx, t.id);
    tx.commit();
    return std::make_pair(t, key);
  });
}

std::string TenantStore::mint_key(const std::string& tenant_name) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params("SELECT id::text FROM tenants WHERE name = $1", tenant_name);
    if (r.empty()) throw NotFound("tenant '" + tenant_name + "' does not exist: create it with `switchboard tenant create`");
    auto key = insert_key(tx, r[0][0].as<std::string>());
    tx.commit();
    return key;
  });
}

std::optional<Tenant> TenantStore::find(const std::string& name) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<Tenant> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT id::text, name FROM tenants WHERE name = $1", name);
    if (r.empty()) return std::nullopt;
    return Tenant{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
  });
}

std::optional<std::string> TenantStore::tenant_for_key(const std::string& api_key) {
  const auto hash = sha256_hex(api_key);
  return pool_.run([&](pqxx::connection& c) -> std::optional<std::string> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT tenant_id::text FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash);
    if (r.empty()) return std::nullopt;
    return r[0][0].as<std::string>();
  });
}

void TenantStore::create_session(const std::string& tenant_id, const std::string& session) {
  if (!valid_session_name(session))
    throw InvalidInput("session name '" + session + "' is invalid: use 1-64 of A-Z, a-z, 0-9, '_', '.', '-'", "session");
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    // A simulator session: nothing to pair, so it is WORKING from the start (as before sessions
    // had a lifecycle). Engine and Cloud API sessions come through POST /v1/sessions.
    auto r = tx.exec_params("INSERT INTO sessions (tenant_id, name, provider, status) VALUES ($1, $2, 'simulator', 'WORKING') "
                            "ON CONFLICT DO NOTHING RETURNING name",
                            tenant_id, session);
    if (r.empty()) throw Conflict("session '" + session + "' already exists for this tenant");
    tx.commit();
  });
}

bool TenantStore::session_exists(const std::string& tenant_id, const std::string& session) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params("SELECT 1 FROM sessions WHERE tenant_id = $1 AND name = $2", tenant_id, session).empty();
  });
}

}  // namespace sb
