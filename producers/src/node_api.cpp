#include "switchboard/producers/node_api.hpp"

#include "json_reply.hpp"

#include "switchboard/core/hmac.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/producers/request_parsing.hpp"

namespace sb {
using nlohmann::json;

NodeApi::NodeApi(const Config& config, pg::Pool& pool)
    : config_(config), registry_(pool, config.engine, config.secrets.key.empty() ? SecretBox() : SecretBox(config.secrets.key)) {}

json NodeApi::view(const NodeInfo& n) {
  return {{"name", n.name},
          {"url", n.url},
          {"source", n.source},
          {"group", n.storage_group},
          {"capacity", n.capacity},
          {"sessions", n.sessions},
          {"slots_used", n.slots},
          {"free", std::max(0, n.capacity - n.slots)},
          {"draining", n.draining},
          {"drained", n.draining && n.sessions == 0},
          {"health", n.health},
          {"failures", n.failures},
          {"health_at", n.health_at ? json(*n.health_at) : json(nullptr)}};
}

NewNode NodeApi::parse_add(const json& body) {
  if (!body.is_object()) throw InvalidInput("the body must be a JSON object");
  auto text = [&](const char* key, bool required) -> std::string {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) {
      if (required) throw InvalidInput(std::string("'") + key + "' is required", key);
      return {};
    }
    if (!it->is_string()) throw InvalidInput(std::string("'") + key + "' must be a string", key);
    return *it;
  };
  NewNode n;
  n.name = text("name", true);
  n.url = text("url", true);
  if (auto g = text("group", false); !g.empty()) n.storage_group = g;
  n.api_key = text("api_key", false);
  n.webhook_hmac_key = text("webhook_hmac_key", false);
  if (n.webhook_hmac_key.empty()) n.webhook_hmac_key = new_secret("whk_");  // sessions are created with it
  auto cap = body.find("capacity");
  if (cap == body.end() || !cap->is_number_integer()) throw InvalidInput("'capacity' (max sessions) must be an integer", "capacity");
  n.capacity = cap->get<int>();
  return n;
}

bool NodeApi::admitted(const http::Request& req, http::Response& res) const {
  if (config_.intake.admin_key.empty()) {
    reply_error(res, 404, "the admin API is off: set intake.admin_key");
    return false;
  }
  auto key = bearer_token(req.get_header_value("Authorization"));
  if (!key || !equal_constant_time(*key, config_.intake.admin_key)) {
    res.set_header("WWW-Authenticate", "Bearer");
    reply_error(res, 401, "missing or wrong admin key: send 'Authorization: Bearer <intake.admin_key>'");
    return false;
  }
  return true;
}

void NodeApi::mount(http::Server& server) {
  auto guarded = [this](auto handler) {
    return [this, handler](const http::Request& req, http::Response& res) {
      if (!admitted(req, res)) return;
      try {
        handler(req, res);
      } catch (const InvalidInput& e) {
        reply_error(res, 422, e.what(), e.field());
      } catch (const NotFound& e) {
        reply_error(res, 404, e.what(), "name");
      } catch (const Conflict& e) {
        reply_error(res, 409, e.what(), "name");
      }
    };
  };
  server.Get("/v1/admin/nodes", guarded([this](const http::Request&, http::Response& res) {
    json items = json::array();
    for (const auto& n : registry_.list()) items.push_back(view(n));
    reply(res, 200, {{"nodes", items}});
  }));
  server.Post("/v1/admin/nodes", guarded([this](const http::Request& req, http::Response& res) {
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      return reply_error(res, 400, std::string("the body is not JSON: ") + e.what());
    }
    const auto n = parse_add(body);
    registry_.add(n);
    res.set_header("Location", "/v1/admin/nodes/" + n.name);
    reply(res, 201, view(*registry_.get(n.name)));
  }));
  server.Get(R"(/v1/admin/nodes/([^/]+))", guarded([this](const http::Request& req, http::Response& res) {
    auto n = registry_.get(req.matches[1]);
    if (!n) throw NotFound("engine node '" + std::string(req.matches[1]) + "' does not exist");
    reply(res, 200, view(*n));
  }));
  auto set_draining = [this](bool drain) {
    return [this, drain](const http::Request& req, http::Response& res) {
      registry_.set_draining(req.matches[1], drain);
      reply(res, 200, view(*registry_.get(req.matches[1])));
    };
  };
  server.Post(R"(/v1/admin/nodes/([^/]+)/drain)", guarded(set_draining(true)));
  server.Post(R"(/v1/admin/nodes/([^/]+)/undrain)", guarded(set_draining(false)));
  server.Delete(R"(/v1/admin/nodes/([^/]+))", guarded([this](const http::Request& req, http::Response& res) {
    registry_.remove(req.matches[1]);
    res.status = 204;
  }));
}

}  // namespace sb
