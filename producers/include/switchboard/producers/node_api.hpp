#pragma once
// Operator routes for engine nodes (core/node_registry.hpp), mounted on the intake server and
// guarded by intake.admin_key (Authorization: Bearer <admin_key>; off — 404 — when empty):
//   GET    /v1/admin/nodes                  every node: capacity, sessions, health, draining
//   POST   /v1/admin/nodes                  {"name","url","capacity","group"?,"api_key"?,"webhook_hmac_key"?} → 201
//   GET    /v1/admin/nodes/{name}
//   POST   /v1/admin/nodes/{name}/drain     the placer moves its sessions off; `drained` once empty
//   POST   /v1/admin/nodes/{name}/undrain
//   DELETE /v1/admin/nodes/{name}           204; 409 while sessions are placed on it
// Credentials are sealed at rest and never shown.
#include <nlohmann/json.hpp>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

class NodeApi {
 public:
  NodeApi(const Config& config, pg::Pool& pool);
  void mount(http::Server& server);

  // The JSON shown for a node (API and `switchboard nodes list --json`).
  static nlohmann::json view(const NodeInfo& n);
  // Parses and validates an add request body ("" webhook_hmac_key: a new random one).
  static NewNode parse_add(const nlohmann::json& body);

 private:
  bool admitted(const http::Request& req, http::Response& res) const;

  const Config& config_;
  NodeRegistry registry_;
};

}  // namespace sb
