#pragma once
// Tenants, their API keys (only hashes are stored) and their sessions.
#include <optional>
#include <string>
#include <utility>

#include "switchboard/core/pg.hpp"

namespace sb {

struct Tenant {
  std::string id;
  std::string name;
};

class TenantStore {
 public:
  explicit TenantStore(pg::Pool& pool) : pool_(pool) {}
  // Returns the tenant and its first API key (shown once, never stored in clear).
  // Throws InvalidInput for a bad name, Conflict if the name is taken.
  std::pair<Tenant, std::string> create(const std::string& name);
  // A new key for an existing tenant (NotFound otherwise).
  std::string mint_key(const std::string& tenant_name);
  std::optional<Tenant> find(const std::string& name);
  // The tenant id owning this key, if the key is known and not revoked.
  std::optional<std::string> tenant_for_key(const std::string& api_key);
  // Throws InvalidInput for a bad name, Conflict if it exists.
  void create_session(const std::string& tenant_id, const std::string& session);
  bool session_exists(const std::string& tenant_id, const std::string& session);

  static bool valid_session_name(const std::string& name);

 private:
  std::string insert_key(pqxx::work& tx, const std::string& tenant_id);
  pg::Pool& pool_;
};

}  // namespace sb
