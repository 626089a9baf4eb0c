#include "switchboard/producers/intake_server.hpp"

#include "json_reply.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "switchboard/core/http_server.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/tenant_store.hpp"
#include "switchboard/producers/command_publisher.hpp"
#include "switchboard/producers/queued_message_writer.hpp"
#include "switchboard/producers/webhook_api.hpp"

namespace sb {
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

// A small TTL cache: API key hash → tenant, "tenant/session" → exists.
class TtlCache {
 public:
  explicit TtlCache(int ttl_ms) : ttl_(std::chrono::milliseconds(ttl_ms)) {}
  std::optional<std::string> get(const std::string& k) {
    std::lock_guard lock(mu_);
    auto it = map_.find(k);
    if (it == map_.end() || it->second.second < SteadyClock::now()) return std::nullopt;
    return it->second.first;
  }
  void put(const std::string& k, const std::string& v) {
    std::lock_guard lock(mu_);
    if (map_.size() > 100000) map_.clear();  // bound memory under key-spraying
    map_[k] = {v, SteadyClock::now() + ttl_};
  }

 private:
  std::chrono::milliseconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<std::string, SteadyClock::time_point>> map_;
};

// Request counters by route and status, exposed at /metrics.
class RequestMetrics {
 public:
  void count(const std::string& route, int status) {
    std::lock_guard lock(mu_);
    ++counts_[{route, status}];
  }
  std::string render() {
    std::lock_guard lock(mu_);
    std::string out = "# HELP sb_intake_requests_total HTTP requests by route and status.\n"
                      "# TYPE sb_intake_requests_total counter\n";
    for (const auto& [k, n] : counts_)
      out += "sb_intake_requests_total{route=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
             std::to_string(n) + "\n";
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> counts_;
};

// Bounded label set: request paths carry ids, and unknown paths are anyone's to invent.
std::string route_label(const std::string& path) {
  if (path.rfind("/v1/sessions/", 0) == 0) return "send_message";
  if (path.rfind("/v1/messages/", 0) == 0) return "get_message";
  if (path.rfind("/v1/webhooks", 0) == 0) return "webhooks";
  if (path.rfind("/v1/events/", 0) == 0) return "events";
  if (path == "/health" || path == "/health/ready" || path == "/metrics") return path;
  return "other";
}

}  // namespace

struct IntakeServer::Impl {
  const Config& config;
  SchemaSet schemas;
  pg::Pool pool;
  TenantStore tenants;
  MessageStore messages;
  QueuedMessageWriter writer;
  CommandPublisher publisher;
  TtlCache keys;
  TtlCache sessions;
  RequestMetrics metrics;
  WebhookApi webhooks;
  HttpServer server;
  std::atomic<int> bound_port{0};

  explicit Impl(const Config& c)
      : config(c),
        schemas(c.schemas_dir),
        pool(c.postgres),
        tenants(pool),
        messages(pool),
        writer(c.intake, messages),
        publisher(c, c.intake.publish_timeout_ms),
        keys(c.intake.auth_cache_ttl_ms),
        sessions(c.intake.auth_cache_ttl_ms),
        webhooks(c, pool, schemas, [this](const auto& req, auto& res) { return authenticate_or_401(req, res); }) {
    routes();
  }

  std::optional<std::string> authenticate(const httplib::Request& req) {
    const auto header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
    const auto key = header.substr(prefix.size());
    const auto hash = sha256_hex(key);  // cache by hash: keys never sit in memory maps in clear
    if (auto t = keys.get(hash)) return t;
    auto tenant = tenants.tenant_for_key(key);
    if (tenant) keys.put(hash, *tenant);
    return tenant;
  }

  // The caller's tenant, or a 401 already written to res.
  std::optional<std::string> authenticate_or_401(const httplib::Request& req, httplib::Response& res) {
    auto tenant = authenticate(req);
    if (!tenant) {
      res.set_header("WWW-Authenticate", "Bearer");
      reply_error(res, 401, "missing or invalid API key: send 'Authorization: Bearer <key>'");
    }
    return tenant;
  }

  bool session_known(const std::string& tenant, const std::string& session) {
    const auto k = tenant + "/" + session;
    if (sessions.get(k)) return true;
    if (!TenantStore::valid_session_name(session) || !tenants.session_exists(tenant, session)) return false;
    sessions.put(k, "1");
    return true;
  }

  void unavailable(httplib::Response& res, const std::string& why) {
    res.set_header("Retry-After", std::to_string(config.intake.retry_after_s));
    reply_error(res, 503, why);
  }

  // Publishes and answers 202, or 503 (the command is not queued: nothing is left behind).
  void publish(const SendCommand& cmd, httplib::Response& res, bool replay) {
    try {
      publisher.publish_and_wait(cmd);
    } catch (const Error& e) {
      log::warn("intake.publish_failed", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id}, {"detail", e.what()}});
      if (!replay) {
        try {
          messages.discard(cmd.id);
        } catch (const Error& d) {
          log::error("intake.discard_failed", {{"message_id", cmd.id}, {"detail", d.what()}});
        }
      }
      return unavailable(res, "the message could not be queued (Kafka unavailable); retry later");
    }
    log::debug("intake.queued", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id}, {"priority", cmd.priority}});
    if (replay) res.set_header("Idempotent-Replayed", "true");
    reply(res, 202, {{"id", cmd.id}, {"status", "queued"}});
  }

  void send_message(const httplib::Request& req, httplib::Response& res) {
    auto tenant = authenticate_or_401(req, res);
    if (!tenant) return;
    const std::string session = req.matches[1];
    json body;
    try {
      body = parse_json(req.body);
    } catch (const InvalidInput& e) {
      return reply_error(res, 400, e.what());
    }
    try {
      schemas.validate("http/send_message_request", body);
    } catch (const InvalidInput& e) {
      return reply_error(res, 422, e.what(), e.field());
    }
    std::optional<std::string> idem;
    if (req.has_header("Idempotency-Key")) idem = req.get_header_value("Idempotency-Key");
    if (body.contains("idempotency_key")) {
      const std::string in_body = body["idempotency_key"];
      if (idem && *idem != in_body)
        return reply_error(res, 422, "Idempotency-Key header and idempotency_key field differ", "idempotency_key");
      idem = in_body;
    }
    if (idem && (idem->empty() || idem->size() > 255))
      return reply_error(res, 422, "Idempotency-Key must be 1 to 255 characters", "idempotency_key");
    if (!session_known(*tenant, session))
      return reply_error(res, 404, "unknown session '" + session + "' for this tenant", "session");

    SendCommand cmd{new_uuid_v7(), *tenant, session, body.value("priority", "default"), now_rfc3339(),
                    body["to"], body["text"]};
    auto fut = writer.insert({cmd.id, cmd.tenant, cmd.session, cmd.to, cmd.text, cmd.priority, idem});
    if (fut.wait_for(std::chrono::milliseconds(config.postgres.statement_timeout_ms + 2000)) != std::future_status::ready)
      return unavailable(res, "database too slow to record the message; retry later");
    const auto outcome = fut.get();  // throws → exception handler (503 for Unavailable)
    if (outcome.created) return publish(cmd, res, false);

    // Same idempotency key as an earlier request: answer with that message. If it is still
    // queued its first publish may not have been acked yet, so publish it again (the worker
    // dedupes by id): a 202 must never stand for a lost command.
    auto earlier = messages.get(*tenant, outcome.id);
    if (!earlier) return unavailable(res, "the earlier request with this idempotency key is still in progress; retry");
    if (earlier->status != "queued") {
      res.set_header("Idempotent-Replayed", "true");
      return reply(res, 202, {{"id", earlier->id}, {"status", earlier->status}});
    }
    SendCommand again{earlier->id, *tenant, earlier->session, earlier->priority, earlier->created_at, earlier->to, earlier->text};
    publish(again, res, true);
  }

  void get_message(const httplib::Request& req, httplib::Response& res) {
    auto tenant = authenticate_or_401(req, res);
    if (!tenant) return;
    const std::string id = req.matches[1];
    auto m = messages.get(*tenant, id);  // another tenant's id is simply not found
    if (!m) return reply_error(res, 404, "no message '" + id + "' for this tenant", "id");
    json history = json::array();
    for (const auto& h : m->history) {
      json e = {{"status", h.status}, {"at", h.at}};
      if (h.detail) e["detail"] = *h.detail;
      history.push_back(e);
    }
    json out = {{"id", m->id}, {"session", m->session}, {"to", m->to}, {"text", m->text},
                {"priority", m->priority}, {"status", m->status}, {"created_at", m->created_at},
                {"updated_at", m->updated_at}, {"history", history}};
    if (m->provider_message_id) out["provider_message_id"] = *m->provider_message_id;
    if (m->error) out["error"] = *m->error;
    if (m->idempotency_key) out["idempotency_key"] = *m->idempotency_key;
    reply(res, 200, out);
  }

  void routes() {
    const int threads = config.intake.threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_payload_max_length(config.intake.max_body_bytes);
    server.set_keep_alive_timeout(30);
    server.set_read_timeout(30, 0);
    server.set_write_timeout(10, 0);

    server.Post(R"(/v1/sessions/([^/]+)/messages)", [this](const auto& req, auto& res) { send_message(req, res); });
    server.Get(R"(/v1/messages/([^/]+))", [this](const auto& req, auto& res) { get_message(req, res); });
    webhooks.mount(server);
    server.Get("/health", [](const auto&, auto& res) { reply(res, 200, {{"status", "ok"}}); });
    server.Get("/health/ready", [this](const auto&, auto& res) {
      const bool kafka_ok = publisher.reachable(2000);
      const bool pg_ok = pool.reachable();
      reply(res, kafka_ok && pg_ok ? 200 : 503,
            {{"status", kafka_ok && pg_ok ? "ready" : "not_ready"}, {"kafka", kafka_ok}, {"postgres", pg_ok}});
    });
    server.Get("/metrics", [this](const auto&, auto& res) { res.set_content(metrics.render(), "text/plain; version=0.0.4"); });

    server.set_exception_handler([this](const auto& req, auto& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const Error& e) {
        log::error("intake.request_failed", {{"path", req.path}, {"kind", to_string(e.kind())}, {"detail", e.what()}});
        if (e.retryable()) return unavailable(res, "a dependency is unavailable; retry later");
        reply_error(res, 500, "internal error");
      } catch (const std::exception& e) {
        log::error("intake.request_failed", {{"path", req.path}, {"detail", e.what()}});
        reply_error(res, 500, "internal error");
      }
    });
    // Fills a JSON body for errors httplib raises itself (413 oversize, 404 no route, 400 bad HTTP).
    server.set_error_handler([](const auto&, auto& res) {
      if (!res.body.empty()) return;
      if (res.status == 413)
        reply_error(res, 413, "request body too large (intake.max_body_bytes)");
      else if (res.status == 404)
        reply_error(res, 404, "no such route");
      else
        reply_error(res, res.status, "HTTP error " + std::to_string(res.status));
    });
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count(route_label(req.path), res.status);
    });
  }
};

IntakeServer::IntakeServer(const Config& config) : impl_(std::make_unique<Impl>(config)) {}
IntakeServer::~IntakeServer() { stop(); }

void IntakeServer::run() {
  const int bound = impl_->server.bind_listen(impl_->config.intake.listen, "intake.listen");
  impl_->bound_port = bound;
  log::info("intake.listening", {{"address", impl_->config.intake.listen}, {"port", std::to_string(bound)}});
  impl_->server.listen_after_bind();
}

void IntakeServer::stop() {
  if (impl_) impl_->server.stop();
}

int IntakeServer::port() const { return impl_->bound_port; }

bool IntakeServer::wait_until_ready(int timeout_ms) const {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  while (SteadyClock::now() < deadline) {
    if (impl_->server.is_running() && impl_->bound_port > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace sb
