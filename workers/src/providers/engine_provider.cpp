#include "switchboard/workers/providers/engine_provider.hpp"

#include <nlohmann/json.hpp>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/redis.hpp"
#include "switchboard/workers/redis_pacer.hpp"

#include "switchboard/workers/providers/http_outcome.hpp"

namespace sb {

using json = nlohmann::json;

std::string EngineProvider::chat_id(const std::string& e164) {
  return (e164.rfind('+', 0) == 0 ? e164.substr(1) : e164) + "@c.us";
}

EngineProvider::EngineProvider(const EngineConfig& config, SecretBox secrets, const RedisConfig* redis)
    : config_(config), secrets_(std::move(secrets)), locks_(redis, 3, std::chrono::minutes(10)), client_(AsyncHttpClient::Options{}) {}

std::optional<EngineNode> EngineProvider::node_of(const SessionRoute& route, std::string& error) const {
  if (route.node_url.empty()) {  // not in the registry (yet): a config node
    if (const EngineNode* n = config_.node(route.node)) return *n;
    error = "engine node '" + route.node + "' is neither registered nor configured (engine.nodes)";
    return std::nullopt;
  }
  EngineNode n;
  n.name = route.node;
  n.url = route.node_url;
  if (route.node_secrets.empty()) {
    if (const EngineNode* c = config_.node(route.node)) n.api_key = c->api_key;
    return n;
  }
  try {
    n.api_key = open_node_secrets(secrets_, route.node, route.node_secrets).value("api_key", "");
  } catch (const Error& e) {
    error = "engine node '" + route.node + "': " + e.what();
    return std::nullopt;
  }
  return n;
}

namespace {
std::string message_id_of(const json& j) {
  if (auto it = j.find("id"); it != j.end()) {
    if (it->is_string()) return *it;
    if (it->is_object() && it->contains("_serialized") && (*it)["_serialized"].is_string()) return (*it)["_serialized"];
  }
  if (auto k = j.find("key"); k != j.end() && k->is_object() && k->contains("id") && (*k)["id"].is_string()) return (*k)["id"];
  return {};
}
}  // namespace

bool ReachOutLocks::is_lock(long status, const std::string& body) {
  return status >= 400 && (body.find("error 463") != std::string::npos || body.find("reachoutTimelock") != std::string::npos ||
                           body.find("REACHOUT_TIMELOCK") != std::string::npos);
}

bool ReachOutLocks::repeated(const std::string& key, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  auto& times = seen_[key];
  while (!times.empty() && now - times.front() > window_) times.pop_front();
  times.push_back(now);
  if (static_cast<int>(times.size()) < threshold_) return false;
  seen_.erase(key);
  return true;
}

namespace {
// KEYS: the session's lock set. ARGV: window ms, threshold, a unique member. Drops the locks
// older than the window, adds this one; at the threshold the set is cleared (the count starts
// over after the pause) and 1 returned.
const std::string kReachOutLockScript = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], window)
return 0
)LUA";
}  // namespace

SharedReachOutLocks::SharedReachOutLocks(const RedisConfig* redis, int threshold, std::chrono::seconds window)
    : threshold_(threshold), window_(window), redis_(redis ? std::make_unique<RedisClient>(*redis) : nullptr), local_(threshold, window) {}

SharedReachOutLocks::~SharedReachOutLocks() = default;

const std::string& SharedReachOutLocks::script() { return kReachOutLockScript; }

bool SharedReachOutLocks::repeated(const std::string& tenant, const std::string& session) {
  if (redis_) {
    // A lock is rare (WhatsApp refused a send): one EVAL, on the HTTP client's thread, bounded
    // by redis.timeout_ms — not worth a pipeline of its own.
    try {
      std::lock_guard lock(mu_);
      const auto key = PacingScript::key_prefix(tenant, session) + "reachout";
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(window_).count();
      auto r = redis_->command({"EVAL", kReachOutLockScript, "1", key, std::to_string(ms), std::to_string(threshold_), new_uuid_v7()});
      if (r->type == REDIS_REPLY_INTEGER) return r->integer == 1;
      log::warn("engine.reach_out_count_failed", {{"tenant", tenant}, {"session", session}, {"detail", "unexpected reply type " + std::to_string(r->type)}});
    } catch (const Error& e) {
      log::warn("engine.reach_out_count_failed", {{"tenant", tenant}, {"session", session}, {"detail", e.what()}});
    }
  }
  return local_.repeated(tenant + "/" + session, std::chrono::steady_clock::now());
}

void EngineProvider::send(const SendRequest& request, SendDone done) {
  std::string problem;
  const auto node = node_of(request.route, problem);
  if (!node) return done(result(SendResult::Status::Rejected, problem));
  HttpRequest req;
  req.url = node->url + "/api/sendText";
  req.timeout_ms = config_.timeout_ms;
  req.connect_timeout_ms = std::min(config_.timeout_ms, 2000);
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  if (!node->api_key.empty()) req.headers.emplace_back("X-Api-Key", node->api_key);
  if (request.route.generation > 0) req.headers.emplace_back(kGenerationHeader, std::to_string(request.route.generation));
  const std::string where = "engine " + node->name + " sendText: ";
  try {
    req.body = json{{"session", request.route.engine_name}, {"chatId", chat_id(request.to)}, {"text", request.text}}.dump();
  } catch (const json::exception& e) {
    return done(result(SendResult::Status::Rejected, where + "request cannot be encoded as JSON: " + e.what()));
  }
  client_.submit(std::move(req), [this, tenant = request.tenant_id, session = request.session, where, done = std::move(done)](HttpResponse resp) {
    if (resp.transport_ok() && ReachOutLocks::is_lock(resp.status, resp.body)) {
      auto r = result(SendResult::Status::RetryableError, where + "reach-out time-lock (WhatsApp error 463): " + excerpt(resp.body));
      r.maybe_delivered = false;  // WhatsApp refused it
      r.throttled = true;
      r.retry_after_ms = 60000;
      if (locks_.repeated(tenant, session)) {
        r.status = SendResult::Status::Rejected;
        r.pause_reason = "reach_out_timelock";
      }
      return done(std::move(r));
    }
    if (resp.transport_ok() && resp.status == 422) {
      // The engine says the session is not WORKING (its status moved before ours did): nothing
      // was sent; try again after a back-off, by which time the status callback has arrived.
      auto r = result(SendResult::Status::RetryableError, where + "HTTP 422 (session not WORKING on the engine): " + excerpt(resp.body));
      r.maybe_delivered = false;
      r.reroute = true;
      return done(std::move(r));
    }
    if (resp.transport_ok() && (resp.status == 404 || resp.status == 409)) {
      // Not on this node (404), or the node knows a newer placement (409, fencing): the session
      // moved; nothing was sent.
      auto r = result(SendResult::Status::RetryableError, where + "HTTP " + std::to_string(resp.status) +
                                                               " (the session is not placed here now): " + excerpt(resp.body));
      r.reroute = true;
      return done(std::move(r));
    }
    auto r = interpret_send(resp, where, message_id_of);
    if (!resp.transport_ok() && !resp.request_sent) r.reroute = true;  // the node is unreachable: it may be failing over
    done(std::move(r));
  });
}

}  // namespace sb
