#pragma once
// Tenant-scoped session lifecycle, mounted on the intake server:
//   POST   /v1/sessions                     {"id","provider","config","start"} → 201 the session
//   GET    /v1/sessions                     the tenant's sessions
//   GET    /v1/sessions/{id}                status, reason, history, provider, node, account
//   POST   /v1/sessions/{id}/start|stop|restart|logout   202 {"command_id"}
//   DELETE /v1/sessions/{id}                202 {"command_id"} (removed once the worker stopped it)
//   GET    /v1/sessions/{id}/qr             {"value","mimetype","data"} while SCAN_QR_CODE, else 409
//   PATCH  /v1/sessions/{id}                {"pacing": {...}|null} → 200 the session (its pacing overrides)
//   POST   /v1/sessions/{id}/resume         202 {"command_id"} (a PAUSED session back to WORKING), else 409
//   GET|PATCH /v1/pacing                    the tenant's pacing overrides {"pacing"} (+ the config "defaults")
// Lifecycle commands travel on sb.commands.high keyed by tenant: the worker owning the tenant's
// partition runs them in order. Credentials in `config` are sealed before they are stored and
// never appear in a response or a log line.
#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/secret_box.hpp"
#include "switchboard/core/pacing_store.hpp"
#include "switchboard/core/session_store.hpp"
#include "switchboard/producers/command_publisher.hpp"

namespace sb {

class SessionApi {
 public:
  using Authenticate = std::function<std::optional<std::string>(const http::Request&, http::Response&)>;
  SessionApi(const Config& config, pg::Pool& pool, const SchemaSet& schemas, CommandPublisher& publisher,
             Authenticate authenticate);
  void mount(http::Server& server);

  // The fields of a session's config that are credentials (sealed, never shown).
  static bool is_secret_field(const std::string& name);
  // Engine sessions refused for want of a node with room (sb_placement_no_capacity_total).
  uint64_t no_capacity() const { return no_capacity_; }

 private:
  void create(const http::Request& req, http::Response& res);
  void list(const http::Request& req, http::Response& res);
  void get(const http::Request& req, http::Response& res);
  void act(const http::Request& req, http::Response& res, const std::string& action);
  void remove(const http::Request& req, http::Response& res);
  void qr(const http::Request& req, http::Response& res);
  void update(const http::Request& req, http::Response& res);
  void tenant_pacing(const http::Request& req, http::Response& res);
  nlohmann::json with_pacing(nlohmann::json view, const std::string& tenant, const std::string& name, bool effective);
  // Publishes a lifecycle command; the command id.
  std::string publish(const std::string& tenant, const std::string& session, const std::string& action);

  const Config& config_;
  const SchemaSet& schemas_;
  SessionStore store_;
  PacingStore pacing_;
  SecretBox secrets_;
  CommandPublisher& publisher_;
  Authenticate authenticate_;
  std::atomic<uint64_t> no_capacity_{0};
};

}  // namespace sb
