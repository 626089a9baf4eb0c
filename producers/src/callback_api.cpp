#include "switchboard/producers/callback_api.hpp"

#include "json_reply.hpp"

#include <atomic>
#include <functional>
#include <memory>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/producers/callback_auth.hpp"

namespace sb {

using json = nlohmann::json;

CallbackApi::CallbackApi(const Config& config, pg::Pool& pool, CommandPublisher& publisher)
    : config_(config),
      sessions_(pool),
      publisher_(publisher),
      nodes_(pool, config.engine, config.secrets.key.empty() ? SecretBox() : SecretBox(config.secrets.key)) {}

std::optional<EngineNode> CallbackApi::node(const std::string& name) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(nodes_mu_);
    if (auto it = node_cache_.find(name); it != node_cache_.end() && it->second.second > now) return it->second.first;
  }
  auto n = nodes_.engine_node(name);  // blocks on PostgreSQL (an offloaded handler)
  std::lock_guard lock(nodes_mu_);
  if (node_cache_.size() > 10000) node_cache_.clear();  // names come from URLs: bound what strangers can fill
  node_cache_[name] = {n, now + std::chrono::seconds(n ? 5 : 1)};
  return n;
}

namespace {
http::Response answer(int status, const json& body) {
  http::Response res;
  reply(res, status, body);
  return res;
}
http::Response unavailable(int retry_after_s) {
  http::Response res;
  res.set_header("Retry-After", std::to_string(retry_after_s));
  reply_error(res, 503, "a dependency is unavailable; retry");
  return res;
}
}  // namespace

void CallbackApi::mount(http::Server& server) {
  // Blocking handlers (a session lookup is a query); the answer waits for Kafka's acks.
  server.async_route("POST", R"(/v1/providers/engine/([^/]+)/webhook)", [this, &server](const http::Request&, http::Responder respond) {
    server.offload([this, respond] { engine(respond.request(), respond); });
  });
  server.Get("/v1/providers/cloud_api/webhook", [this](const auto& req, auto& res) { cloud_verify(req, res); });
  server.async_route("POST", "/v1/providers/cloud_api/webhook", [this, &server](const http::Request&, http::Responder respond) {
    server.offload([this, respond] { cloud(respond.request(), respond); });
  });
}

void CallbackApi::publish_all(std::vector<CallbackRecord> records, const http::Responder& respond) {
  if (records.empty()) return respond(answer(200, {{"accepted", 0}}));
  struct Pending {
    std::atomic<std::size_t> left;
    std::atomic<bool> failed{false};
    std::size_t total;
  };
  auto p = std::make_shared<Pending>();
  p->left = records.size();
  p->total = records.size();
  const int retry_after = config_.intake.retry_after_s;
  for (const auto& r : records) {
    try {
      publisher_.publish_record(kCallbacksTopic, r.tenant, r.to_json().dump(), {{"sb-callback-kind", r.kind}},
                                [p, respond, retry_after, id = r.id](const kafka::DeliveryResult& d) {
                                  if (!d.ok()) {
                                    p->failed = true;
                                    log::warn("callback.not_queued", {{"callback_id", id}, {"detail", d.error}});
                                  }
                                  if (--p->left > 0) return;
                                  if (!p->failed) return respond(answer(200, {{"accepted", p->total}}));
                                  http::Response res;
                                  res.set_header("Retry-After", std::to_string(retry_after));
                                  reply_error(res, 503, "the callback could not be stored (Kafka unavailable); retry");
                                  respond(std::move(res));
                                });
    } catch (const Error& e) {
      p->failed = true;
      log::warn("callback.not_queued", {{"callback_id", r.id}, {"detail", e.what()}});
      if (--p->left == 0) {
        http::Response res;
        res.set_header("Retry-After", std::to_string(retry_after));
        reply_error(res, 503, "the callback could not be stored (Kafka unavailable); retry");
        respond(std::move(res));
      }
    }
  }
}

void CallbackApi::engine(const http::Request& req, const http::Responder& respond) {
  const std::string node_name = req.matches[1];
  std::optional<EngineNode> node;
  try {
    node = this->node(node_name);
  } catch (const Error& e) {
    if (e.retryable()) return respond(unavailable(config_.intake.retry_after_s));
    log::error("callback.node_unreadable", {{"node", node_name}, {"detail", e.what()}});
  }
  if (!node) return respond(answer(404, {{"error", "no engine node '" + node_name + "'"}}));
  const auto signature = req.get_header_value("X-Webhook-Hmac");
  if (!engine_callback_signed(node->webhook_hmac_key, req.body, signature)) {
    log::warn("callback.rejected", {{"provider", "engine"}, {"node", node_name}, {"reason", signature.empty() ? "unsigned" : "bad_signature"}});
    return respond(answer(401, {{"error", "missing or wrong X-Webhook-Hmac (HMAC-SHA512 of the body under the node's key)"}}));
  }
  EngineCallback cb;
  try {
    cb = parse_engine_callback(req.body);
  } catch (const InvalidInput& e) {
    return respond(answer(400, {{"error", e.what()}}));
  }
  std::optional<SessionStore::Owner> owner;
  try {
    // A status is fenced by the placement's generation as it is now: never from the cache.
    owner = cb.event == "session.status" ? sessions_.find_by_engine_name(node_name, cb.session)
                                         : owner_of_engine_session(node_name, cb.session);
  } catch (const Error&) {
    return respond(unavailable(config_.intake.retry_after_s));
  }
  if (!owner) {
    log::info("callback.unknown_session", {{"provider", "engine"}, {"node", node_name}, {"engine_session", cb.session}, {"event", cb.event}});
    return respond(answer(200, {{"accepted", 0}, {"ignored", "unknown session"}}));
  }
  std::vector<CallbackRecord> records;
  try {
    if (auto r = engine_record(cb, owner->tenant_id, owner->name)) {
      // A status is the node's word about its placement: fenced by the generation it holds now
      // (the callbacks worker drops it if the session was re-placed before it is recorded).
      if (r->kind == "status" && owner->generation > 0) r->data["generation"] = owner->generation;
      records.push_back(std::move(*r));
    }
  } catch (const InvalidInput& e) {
    return respond(answer(400, {{"error", e.what()}}));
  }
  publish_all(std::move(records), respond);
}

namespace {
// "tenant\nname": neither holds a newline (a uuid; a session name's alphabet has none).
std::optional<SessionStore::Owner> cached(TtlCache& cache, const std::string& key,
                                          const std::function<std::optional<SessionStore::Owner>()>& lookup) {
  if (auto hit = cache.get(key)) {
    const auto cut = hit->find('\n');
    return SessionStore::Owner{hit->substr(0, cut), hit->substr(cut + 1)};
  }
  auto owner = lookup();
  if (owner) cache.put(key, owner->tenant_id + "\n" + owner->name);
  return owner;
}
}  // namespace

std::optional<SessionStore::Owner> CallbackApi::owner_of_engine_session(const std::string& node, const std::string& engine_session) {
  return cached(owners_, "engine\n" + node + "\n" + engine_session, [&] { return sessions_.find_by_engine_name(node, engine_session); });
}

std::optional<SessionStore::Owner> CallbackApi::owner_of_number(const std::string& phone_number_id) {
  return cached(owners_, "cloud_api\n" + phone_number_id, [&] { return sessions_.find_by_phone_number_id(phone_number_id); });
}

void CallbackApi::cloud_verify(const http::Request& req, http::Response& res) {
  auto challenge = cloud_handshake_challenge(req, config_.cloud_api.verify_token);
  if (!challenge) {
    log::warn("callback.verify_refused", {{"provider", "cloud_api"}, {"mode", req.get_param_value("hub.mode")}});
    return reply_error(res, 403, "hub.verify_token does not match cloud_api.verify_token");
  }
  res.status = 200;
  res.set_content(std::move(*challenge), "text/plain");
}

void CallbackApi::cloud(const http::Request& req, const http::Responder& respond) {
  const auto header = req.get_header_value("X-Hub-Signature-256");
  if (!cloud_callback_signed(config_.cloud_api.app_secret, req.body, header)) {
    log::warn("callback.rejected", {{"provider", "cloud_api"}, {"reason", header.empty() ? "unsigned" : "bad_signature"}});
    return respond(answer(401, {{"error", "missing or wrong X-Hub-Signature-256 (sha256= HMAC of the body under the app secret)"}}));
  }
  std::vector<CloudFact> facts;
  try {
    facts = parse_cloud_callback(req.body);
  } catch (const InvalidInput& e) {
    return respond(answer(400, {{"error", e.what()}}));
  }
  std::vector<CallbackRecord> records;
  try {
    std::map<std::string, std::optional<SessionStore::Owner>> owners;
    for (auto& f : facts) {
      auto it = owners.find(f.phone_number_id);
      if (it == owners.end()) it = owners.emplace(f.phone_number_id, owner_of_number(f.phone_number_id)).first;
      if (!it->second) {
        log::info("callback.unknown_session", {{"provider", "cloud_api"}, {"phone_number_id", f.phone_number_id}});
        continue;
      }
      f.record.tenant = it->second->tenant_id;
      f.record.session = it->second->name;
      records.push_back(std::move(f.record));
    }
  } catch (const Error&) {
    return respond(unavailable(config_.intake.retry_after_s));
  }
  publish_all(std::move(records), respond);
}

}  // namespace sb
