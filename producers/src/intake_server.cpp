#include "switchboard/producers/intake_server.hpp"
#include "switchboard/producers/ttl_cache.hpp"

#include "json_reply.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "switchboard/core/cluster_status.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/metrics.hpp"
#include "switchboard/core/scheduled_store.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/core/tenant_store.hpp"
#include "switchboard/producers/auth_throttle.hpp"
#include "switchboard/producers/command_publisher.hpp"
#include "switchboard/producers/cors_policy.hpp"
#include "switchboard/producers/event_stream_api.hpp"
#include "switchboard/producers/queued_message_writer.hpp"
#include "switchboard/producers/scheduled_sender.hpp"
#include "switchboard/producers/lane_backpressure.hpp"
#include "switchboard/producers/tenant_quotas.hpp"
#include "switchboard/producers/callback_api.hpp"
#include "switchboard/producers/session_api.hpp"
#include "switchboard/producers/node_api.hpp"
#include "switchboard/producers/request_parsing.hpp"
#include "switchboard/producers/send_request_check.hpp"
#include "switchboard/producers/webhook_api.hpp"

namespace sb {
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The route label of a request: its route's template (never the raw path, which carries ids
// and is anyone's to invent), "unmatched" when no route took it (404, or 400/413 before routing).
std::string intake_route_label(const http::Request& req) { return req.route.empty() ? "unmatched" : req.route; }

// Request counters by method, route template and status, exposed at /metrics.
class RequestMetrics {
 public:
  void count(const http::Request& req, int status) {
    // Looked up by views: a request that finds its series copies no string (every request is counted).
    const std::string_view route = req.route.empty() ? std::string_view("unmatched") : std::string_view(req.route);
    std::lock_guard lock(mu_);
    auto it = counts_.find(std::make_tuple(std::string_view(req.method), route, status));
    if (it == counts_.end()) it = counts_.emplace(std::make_tuple(req.method, std::string(route), status), 0).first;
    ++it->second;
  }
  std::string render() {
    std::lock_guard lock(mu_);
    std::string out = "# HELP sb_intake_requests_total HTTP requests by method, route template and status.\n"
                      "# TYPE sb_intake_requests_total counter\n";
    for (const auto& [k, n] : counts_)
      out += "sb_intake_requests_total{method=\"" + std::get<0>(k) + "\",route=\"" + std::get<1>(k) + "\",status=\"" +
             std::to_string(std::get<2>(k)) + "\"} " + std::to_string(n) + "\n";
    return out;
  }

 private:
  // Compares stored keys and looked-up views alike as views (std::less<> would compare
  // tuple<string> with tuple<string_view>, which clang's libstdc++ mode refuses).
  struct SeriesLess {
    using is_transparent = void;
    using View = std::tuple<std::string_view, std::string_view, int>;
    static View view(const std::tuple<std::string, std::string, int>& k) { return {std::get<0>(k), std::get<1>(k), std::get<2>(k)}; }
    static View view(const View& v) { return v; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const { return view(a) < view(b); }
  };
  std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t, SeriesLess> counts_;
};

// Latency of every intake route (messages, sessions, webhooks, provider callbacks, admin,
// health…) by method and route template, in a prometheus-cpp histogram: from the request's
// header arriving (http::Request::received) to its response queued for writing — body read,
// a wait for a blocking-pool thread, PostgreSQL, Kafka's acknowledgement all included.
class RouteLatency {
 public:
  RouteLatency()
      : family_(prometheus::BuildHistogram()
                    .Name("sb_intake_request_duration_seconds")
                    .Help("Intake request latency (header received to response queued) by method and route template.")
                    .Register(metrics::registry())) {}
  // The send route's series exist from the start (dashboards show 0, not "no data").
  void precreate(const std::string& method, const std::string& route) {
    series(method, route);
  }
  void observe(const http::Request& req) {
    if (req.received == SteadyClock::time_point{}) return;
    series(req.method, intake_route_label(req)).Observe(metrics::seconds_since(req.received));
  }

 private:
  // The histogram of a method and route, made once: Family::Add builds a whole histogram (its
  // buckets) and a label map before it finds the existing one, on every call.
  prometheus::Histogram& series(const std::string& method, const std::string& route) {
    std::lock_guard lock(mu_);
    auto it = series_.find(std::make_tuple(std::string_view(method), std::string_view(route)));
    if (it == series_.end())
      it = series_.emplace(std::make_tuple(method, route),
                           &family_.Add({{"method", method}, {"route", route}}, metrics::latency_buckets())).first;
    return *it->second;
  }

  prometheus::Family<prometheus::Histogram>& family_;
  struct SeriesLess {  // as RequestMetrics::SeriesLess: stored keys and views compared as views
    using is_transparent = void;
    using View = std::tuple<std::string_view, std::string_view>;
    static View view(const std::tuple<std::string, std::string>& k) { return {std::get<0>(k), std::get<1>(k)}; }
    static View view(const View& v) { return v; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const { return view(a) < view(b); }
  };
  std::mutex mu_;
  std::map<std::tuple<std::string, std::string>, prometheus::Histogram*, SeriesLess> series_;
};

// A Prometheus label value: backslash, quote and newline escaped.
std::string label_value(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') out += '\\';
    if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

}  // namespace

struct IntakeServer::Impl {
  const Config& config;
  SchemaSet schemas;
  SendBodyShortcut send_shortcut;  // the send body checked without valijson when plainly valid
  pg::Pool pool;
  TenantStore tenants;
  MessageStore messages;
  ScheduledStore scheduled;  // send_at: stored, released by a scheduler, cancellable
  TtlCache keys;
  TtlCache sessions;
  AuthThrottle throttle;
  RequestMetrics metrics;
  RouteLatency latency;
  WebhookApi webhooks;
  EventStreamApi streams;  // before the server: its routes' work reaches it until the server stops
  CorsPolicy cors;         // before the server: it runs on every answer (intake.cors_allowed_origins)
  // The server is declared before what its handlers and the callbacks below reach through it
  // (offload, Responders); ~Impl stops it, then the writer, then flushes the publisher, so no
  // callback runs into a destroyed member.
  http::Server server;
  QueuedMessageWriter writer;
  CommandPublisher publisher;  // after the writer: its delivery callbacks queue discards there
  SessionApi session_api;      // publishes lifecycle commands through the publisher
  CallbackApi callback_api;    // provider callbacks onto sb.callbacks, through the publisher
  NodeApi node_api;            // operators: engine nodes (/v1/admin/nodes)
  std::unique_ptr<ScheduledSender> scheduler;  // after the publisher it publishes through (scheduler.enabled)
  // Last: their threads run request continuations that reach everything above.
  TenantQuotas quotas;            // per-tenant requests/s and messages/day, in Redis
  LaneBackpressure backpressure;  // lane lag, read every backpressure.check_interval_ms
  std::atomic<int> bound_port{0};
  std::atomic<uint64_t> acks{0}, ack_us{0};  // broker acknowledgements and their summed latency

  explicit Impl(const Config& c)
      : config(c),
        schemas(c.schemas_dir),
        send_shortcut(SendBodyShortcut::from_dir(c.schemas_dir)),
        pool(c.postgres),
        tenants(pool),
        messages(pool),
        scheduled(pool),
        keys(c.intake.auth_cache_ttl_ms),
        sessions(c.intake.auth_cache_ttl_ms),
        throttle({c.intake.auth_failure_limit, c.intake.auth_failure_window_s, c.intake.auth_block_s}),
        webhooks(c, pool, schemas, [this](const auto& req, auto& res) { return authenticate_counted(req, res); }),
        streams(c,
                [this](const auto& req, const std::string& key, auto& res) {
                  return authenticate_key_or_401(req, key, res,
                                                 "send 'Authorization: Bearer <key>' (browsers: ?api_key=<key>)");
                }),
        cors(c.intake.cors_origins()),
        server(server_options(c.intake)),
        writer(c.intake, messages),
        publisher(c, c.intake.publish_timeout_ms),
        session_api(c, pool, schemas, publisher, [this](const auto& req, auto& res) { return authenticate_counted(req, res); }),
        callback_api(c, pool, publisher),
        node_api(c, pool),
        quotas(c, pool),
        backpressure(c) {
    // Config nodes (engine.nodes) join the registry: placement sees them.
    try {
      NodeRegistry(pool, c.engine, SecretBox()).register_config_nodes();
    } catch (const Error& e) {
      log::warn("intake.config_nodes_not_registered", {{"detail", e.what()}});  // the next role to start does it
    }
    if (c.scheduler.enabled) scheduler = std::make_unique<ScheduledSender>(c, pool, publisher);
    if (!send_shortcut.enabled())
      log::warn("intake.send_check_shortcut_off", {{"detail", "http/send_message_request.json differs from the schema "
                                                              "SendBodyShortcut was written for: every send body goes through valijson"}});
    routes();
  }

  ~Impl() {
    server.stop();     // no request handler runs from here on
    if (scheduler) scheduler->stop();  // its turn under way finishes (bounded by the publish timeout)
    writer.stop();     // rows still queued are written; their callbacks publish
    publisher.flush(config.intake.publish_timeout_ms + 1000);  // delivery callbacks answer or discard
  }

  static http::ServerOptions server_options(const IntakeConfig& c) {
    http::ServerOptions o;
    o.io_threads = c.io_threads;
    o.blocking_threads = c.blocking_threads;
    o.max_body_bytes = static_cast<std::size_t>(c.max_body_bytes);
    o.idle_timeout_ms = c.idle_timeout_ms;
    o.read_timeout_ms = 30000;
    o.write_timeout_ms = 10000;
    return o;
  }

  // "Bearer <key>" → the key's SHA-256 (cache by hash: keys never sit in memory maps in clear).
  static std::optional<std::pair<std::string, std::string>> bearer_key(const http::Request& req) {
    auto key = bearer_token(req.get_header_value("Authorization"));
    if (!key) return std::nullopt;
    auto hash = sha256_hex(*key);
    return std::make_pair(std::move(*key), std::move(hash));
  }

  static constexpr const char* kBearerHint = "send 'Authorization: Bearer <key>'";

  static void unauthorized(http::Response& res, const std::string& hint = kBearerHint) {
    res.set_header("WWW-Authenticate", "Bearer");
    reply_error(res, 401, "missing or invalid API key: " + hint);
  }

  // The caller's tenant, or nullopt with the answer written to res: 401 (no key, unknown key)
  // or 429 (this address sent too many unknown keys lately; see AuthThrottle). May block on
  // PostgreSQL.
  std::optional<std::string> authenticate_or_401(const http::Request& req, http::Response& res) {
    auto key = bearer_token(req.get_header_value("Authorization"));
    return authenticate_key_or_401(req, key ? *key : std::string(), res, kBearerHint);
  }

  // The same for a key however it came (the event stream also takes ?api_key=): every way in
  // shares the cache and the brute-force throttle, so no route is a free oracle for guesses.
  std::optional<std::string> authenticate_key_or_401(const http::Request& req, const std::string& api_key,
                                                     http::Response& res, const std::string& hint) {
    if (api_key.empty()) {
      unauthorized(res, hint);
      return std::nullopt;
    }
    const auto hash = sha256_hex(api_key);
    if (auto t = keys.get(hash)) return t;  // known good: never throttled
    if (const int wait_s = throttle.blocked_for_s(req.remote_addr)) {
      res.set_header("Retry-After", std::to_string(wait_s));
      reply_error(res, 429, "too many invalid API keys from this address; retry after " + std::to_string(wait_s) + " s");
      return std::nullopt;
    }
    auto tenant = tenants.tenant_for_key(api_key);  // blocks on PostgreSQL
    if (tenant) {
      keys.put(hash, *tenant);
      return tenant;
    }
    if (throttle.failed(req.remote_addr)) {
      const auto& o = throttle.options();
      log::warn("intake.auth_throttled", {{"source", req.remote_addr}, {"failures", std::to_string(o.limit + 1)},
                                          {"window_s", std::to_string(o.window_s)},
                                          {"blocked_s", std::to_string(o.block_s)}});
    }
    unauthorized(res, hint);
    return std::nullopt;
  }

  // authenticate_or_401, then the tenant's requests/s quota (429 with RateLimit headers).
  // For every authenticated route but the send, which counts its request itself (async).
  // Allowed answers carry the RateLimit headers too (the draft's intent: a client paces
  // itself before it is refused); handlers only add headers to res, so they survive.
  std::optional<std::string> authenticate_counted(const http::Request& req, http::Response& res) {
    auto tenant = authenticate_or_401(req, res);
    if (!tenant) return tenant;
    const auto d = quotas.check_now(*tenant, 0);
    if (d.allowed) {
      if (!d.policy_header.empty()) res.set_header("RateLimit-Policy", d.policy_header);
      if (!d.ratelimit_header.empty()) res.set_header("RateLimit", d.ratelimit_header);
      return tenant;
    }
    over_quota(res, d);
    return std::nullopt;
  }

  void over_quota(http::Response& res, const QuotaDecision& d) {
    res.set_header("Retry-After", std::to_string(std::max(1, d.retry_after_s)));
    if (!d.policy_header.empty()) res.set_header("RateLimit-Policy", d.policy_header);
    if (!d.ratelimit_header.empty()) res.set_header("RateLimit", d.ratelimit_header);
    reply_error(res, 429, d.exceeded == "messages"
                              ? "over the tenant's messages-per-day quota; retry after " + std::to_string(d.retry_after_s) + " s"
                              : "over the tenant's requests-per-second quota; retry after " + std::to_string(std::max(1, d.retry_after_s)) + " s");
  }

  bool session_known(const std::string& tenant, const std::string& session) {
    const auto k = tenant + "/" + session;
    if (sessions.get(k)) return true;
    if (!TenantStore::valid_session_name(session) || !tenants.session_exists(tenant, session)) return false;
    sessions.put(k, "1");
    return true;
  }

  void unavailable(http::Response& res, const std::string& why) {
    res.set_header("Retry-After", std::to_string(config.intake.retry_after_s));
    reply_error(res, 503, why);
  }

  http::Response unavailable(const std::string& why) {
    http::Response res;
    unavailable(res, why);
    return res;
  }

  // What a handler's exception means for the client (also used off the handler's thread).
  void exception_reply(const http::Request& req, http::Response& res, std::exception_ptr ep) {
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
  }

  // Publishes and answers in the broker's delivery callback: 202 once acked; 503 when Kafka did
  // not take it in time. A record librdkafka says was *not* persisted is forgotten (row
  // discarded); one that *possibly* was keeps its row `queued` and the 503 names the message id:
  // a retry with the same Idempotency-Key finds the row and republishes the same id (the worker
  // dedupes by id), so neither a lost nor a doubled message can come of it.
  void publish(const SendCommand& cmd, const http::Responder& respond, bool replay) {
    auto failed = [this, respond, replay, id = cmd.id](kafka::Persisted persisted, const std::string& detail,
                                                       const SendCommand* c) {
      log::warn("intake.publish_failed", {{"tenant", c ? c->tenant : ""}, {"message_id", id}, {"detail", detail},
                                          {"persisted", persisted == kafka::Persisted::Not ? "no" : "possibly"}});
      if (persisted == kafka::Persisted::Not) {
        if (!replay) writer.discard(id);
        return respond(unavailable("the message could not be queued (Kafka unavailable); retry later"));
      }
      http::Response res;
      res.set_header("Retry-After", std::to_string(config.intake.retry_after_s));
      reply(res, 503, {{"error", "Kafka did not confirm the message in time; it may still be sent: retry with the same "
                                 "Idempotency-Key (or check GET /v1/messages/" + id + ")"},
                       {"id", id},
                       {"status", "unknown"}});
      respond(std::move(res));
    };
    try {
      const auto t0 = SteadyClock::now();
      publisher.publish(cmd, [this, respond, replay, failed, cmd, t0](const kafka::DeliveryResult& r) {
        if (!r.ok()) return failed(r.persisted, r.error, &cmd);
        ++acks;
        ack_us += std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - t0).count();
        // Checked first: the fields are string copies even when debug lines are off (every send).
        if (spdlog::default_logger_raw()->should_log(spdlog::level::debug))
          log::debug("intake.queued", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id}, {"priority", cmd.priority}});
        http::Response res;
        if (replay) res.set_header("Idempotent-Replayed", "true");
        reply(res, 202, {{"id", cmd.id}, {"status", "queued"}});
        respond(std::move(res));
      });
    } catch (const Error& e) {
      failed(kafka::Persisted::Not, e.what(), &cmd);  // not even queued locally
    }
  }

  // On an IO thread with may_block == false: everything cached runs here; a cache miss moves
  // the request to the blocking pool (may_block == true) and starts over there.
  void send_message(const http::Request& req, const http::Responder& respond, bool may_block) {
    // Offloaded work has no handler around it to catch: an exception (PostgreSQL down while a key
    // or session is looked up) would reach the pool thread and terminate intake (the chaos
    // harness's PostgreSQL restart did). It is answered like any handler's.
    auto again_blocking = [this, respond] {
      server.offload([this, respond] {
        try {
          send_message(respond.request(), respond, true);
        } catch (...) {
          http::Response r;
          exception_reply(respond.request(), r, std::current_exception());
          respond(std::move(r));
        }
      });
    };
    http::Response res;
    std::optional<std::string> tenant;
    if (may_block) {
      tenant = authenticate_or_401(req, res);
      if (!tenant) return respond(std::move(res));
    } else if (auto key = bearer_key(req)) {
      tenant = keys.get(key->second);
      if (!tenant) return again_blocking();
    } else {
      unauthorized(res);
      return respond(std::move(res));
    }
    const std::string session = req.matches[1];
    std::optional<std::string> header_key;
    if (req.has_header("Idempotency-Key")) header_key = req.get_header_value("Idempotency-Key");
    SendMessageRequest in;
    try {
      in = send_shortcut.parse(req.body, header_key, schemas);
    } catch (const RequestRejected& e) {
      reply_error(res, e.status(), e.what(), e.field());
      return respond(std::move(res));
    }
    // A cached session is known (one lookup); otherwise PostgreSQL says, on the blocking pool.
    if (!sessions.get(*tenant + "/" + session)) {
      if (!may_block) return again_blocking();
      if (!session_known(*tenant, session)) {
        reply_error(res, 404, "unknown session '" + session + "' for this tenant", "session");
        return respond(std::move(res));
      }
    }

    // Backpressure (a cached flag) before the quota: a refused send should not use up quota.
    if (!in.send_at && backpressure.overloaded(in.priority)) {
      res.set_header("Retry-After", std::to_string(config.backpressure.retry_after_s));
      reply_error(res, 503, "lane '" + in.priority + "' is behind (consumer lag over backpressure.max_lag); retry after " +
                                std::to_string(config.backpressure.retry_after_s) + " s");
      return respond(std::move(res));
    }
    // With no quota configured this calls back at once, on this thread.
    quotas.check(*tenant, 1, [this, respond, tenant = *tenant, session, in = std::move(in)](const QuotaDecision& d) {
      if (!d.allowed) {
        http::Response r;
        over_quota(r, d);
        return respond(std::move(r));
      }
      // Whatever answers this send (202, or a 503 from Kafka) states the quota left.
      if (!d.policy_header.empty()) respond.add_header("RateLimit-Policy", d.policy_header);
      if (!d.ratelimit_header.empty()) respond.add_header("RateLimit", d.ratelimit_header);
      accept_send(tenant, session, in, respond);
    });
  }

  // The send, authenticated, valid and within quota: stored and published (or scheduled).
  void accept_send(const std::string& tenant, const std::string& session, const SendMessageRequest& in, const http::Responder& respond) {
    if (in.send_at) {  // a scheduled send: one insert, off the IO thread (not the hot path)
      return server.offload([this, respond, tenant, session, in] { schedule_message(tenant, session, in, respond); });
    }
    SendCommand cmd{new_uuid_v7(), tenant, session, in.priority, now_rfc3339(), in.to, in.text};
    NewMessage row{cmd.id, cmd.tenant, cmd.session, cmd.to, cmd.text, cmd.priority, in.idempotency_key};
    writer.insert(std::move(row), [this, respond, cmd = std::move(cmd)](const InsertOutcome& outcome, std::exception_ptr err) {
      if (err) {
        http::Response r;
        exception_reply(respond.request(), r, err);
        return respond(std::move(r));
      }
      if (outcome.created) return publish(cmd, respond, false);
      // Same idempotency key as an earlier request: reading it is a query, off this thread.
      server.offload([this, respond, tenant = cmd.tenant, id = outcome.id] {
        try {
          replay_earlier(tenant, id, respond);
        } catch (...) {
          http::Response r;
          exception_reply(respond.request(), r, std::current_exception());
          respond(std::move(r));
        }
      });
    });
  }

  // Stores a send_at message as 'scheduled' (ScheduledSender publishes it when due).
  void schedule_message(const std::string& tenant, const std::string& session, const SendMessageRequest& in,
                        const http::Responder& respond) {
    http::Response res;
    try {
      const long long now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
      const long long max_ahead_ms = static_cast<long long>(config.scheduler.max_ahead_days) * 86400000LL;
      if (in.send_at_unix_ms - now_ms > max_ahead_ms) {
        reply_error(res, 422, "send_at is more than " + std::to_string(config.scheduler.max_ahead_days) +
                                  " days ahead (scheduler.max_ahead_days)", "send_at");
        return respond(std::move(res));
      }
      NewMessage row{new_uuid_v7(), tenant, session, in.to, in.text, in.priority, in.idempotency_key};
      const auto outcome = scheduled.schedule(row, *in.send_at);
      if (!outcome.created) return replay_earlier(tenant, outcome.id, respond);
      log::debug("intake.scheduled", {{"tenant", tenant}, {"session", session}, {"message_id", outcome.id}, {"send_at", *in.send_at}});
      reply(res, 202, {{"id", outcome.id}, {"status", "scheduled"}});
    } catch (...) {
      exception_reply(respond.request(), res, std::current_exception());
    }
    respond(std::move(res));
  }

  // DELETE /v1/messages/{id}: a scheduled message is cancelled; anything further along is 409.
  void cancel_message(const http::Request& req, http::Response& res) {
    auto tenant = authenticate_counted(req, res);
    if (!tenant) return;
    const std::string id = req.matches[1];
    const auto r = scheduled.cancel(*tenant, id, config.intake.publish_timeout_ms + 2000);
    using Kind = ScheduledStore::CancelResult::Kind;
    if (r.kind == Kind::NotFound) return reply_error(res, 404, "no message '" + id + "' for this tenant", "id");
    if (r.kind == Kind::TooLate)
      return reply_error(res, 409, "message '" + id + "' is " + r.status + ": only a scheduled message can be cancelled", "id");
    log::info("intake.cancelled", {{"tenant", *tenant}, {"message_id", id}});
    reply(res, 200, {{"id", id}, {"status", "cancelled"}});
  }

  // Answers with the earlier message of an idempotency key. If it is still queued its first
  // publish may not have been acked (or was possibly persisted), so publish it again: the worker
  // dedupes by id, and a 202 must never stand for a lost command.
  void replay_earlier(const std::string& tenant, const std::string& id, const http::Responder& respond) {
    auto earlier = messages.get(tenant, id);
    if (!earlier) return respond(unavailable("the earlier request with this idempotency key is still in progress; retry"));
    if (earlier->status != "queued" || earlier->send_at) {  // a scheduled one is the scheduler's to publish
      http::Response res;
      res.set_header("Idempotent-Replayed", "true");
      reply(res, 202, {{"id", earlier->id}, {"status", earlier->status}});
      return respond(std::move(res));
    }
    SendCommand again{earlier->id, tenant, earlier->session, earlier->priority, earlier->created_at, earlier->to, earlier->text};
    publish(again, respond, true);
  }

  void get_message(const http::Request& req, http::Response& res) {
    auto tenant = authenticate_counted(req, res);
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
    if (m->send_at) out["send_at"] = *m->send_at;
    reply(res, 200, out);
  }

  void routes() {
    server.async_route("POST", R"(/v1/sessions/([^/]+)/messages)",
                       [this](const http::Request& req, http::Responder respond) { send_message(req, respond, false); });
    server.Get(R"(/v1/messages/([^/]+))", [this](const auto& req, auto& res) { get_message(req, res); });
    server.Delete(R"(/v1/messages/([^/]+))", [this](const auto& req, auto& res) { cancel_message(req, res); });
    webhooks.mount(server);
    session_api.mount(server);
    node_api.mount(server);
    callback_api.mount(server);
    streams.mount(server);
    server.async_route("GET", "/health", [](const http::Request&, http::Responder respond) {
      http::Response res;
      reply(res, 200, {{"status", "ok"}});
      respond(std::move(res));
    });
    server.Get("/health/ready", [this](const auto&, auto& res) {
      const bool kafka_ok = publisher.reachable(2000);
      const bool pg_ok = pool.reachable();
      reply(res, kafka_ok && pg_ok ? 200 : 503,
            {{"status", kafka_ok && pg_ok ? "ready" : "not_ready"}, {"kafka", kafka_ok}, {"postgres", pg_ok}});
    });
    // On the blocking pool: the sessions gauge is a PostgreSQL query (one GROUP BY per scrape).
    server.Get("/metrics", [this](const http::Request&, http::Response& res) {
      const auto w = writer.stats();
      std::string out = metrics.render();
      out += "# HELP sb_intake_insert_batches_total Group-committed insert transactions.\n"
             "# TYPE sb_intake_insert_batches_total counter\nsb_intake_insert_batches_total " + std::to_string(w.batches) +
             "\n# HELP sb_intake_insert_rows_total Rows in them.\n# TYPE sb_intake_insert_rows_total counter\n"
             "sb_intake_insert_rows_total " + std::to_string(w.rows) +
             "\n# HELP sb_intake_insert_seconds_total Time spent writing them.\n# TYPE sb_intake_insert_seconds_total counter\n"
             "sb_intake_insert_seconds_total " + std::to_string(w.write_us / 1e6) +
             "\n# HELP sb_intake_kafka_acks_total Commands acknowledged by the broker.\n# TYPE sb_intake_kafka_acks_total counter\n"
             "sb_intake_kafka_acks_total " + std::to_string(acks.load()) +
             "\n# HELP sb_intake_kafka_ack_seconds_total Summed produce-to-ack latency.\n# TYPE sb_intake_kafka_ack_seconds_total counter\n"
             "sb_intake_kafka_ack_seconds_total " + std::to_string(ack_us.load() / 1e6) + "\n";
      out += streams.metrics();
      out += "# HELP sb_placement_no_capacity_total Engine sessions refused: no node of their group had room.\n"
             "# TYPE sb_placement_no_capacity_total counter\nsb_placement_no_capacity_total " +
             std::to_string(session_api.no_capacity()) + "\n";
      out += backpressure.metrics();
      out += "# HELP sb_intake_quota_refused_total Requests refused with 429 for a tenant quota.\n"
             "# TYPE sb_intake_quota_refused_total counter\nsb_intake_quota_refused_total " + std::to_string(quotas.refused()) +
             "\n# HELP sb_intake_redis_errors_total Quota checks Redis could not answer (let through).\n"
             "# TYPE sb_intake_redis_errors_total counter\nsb_intake_redis_errors_total " + std::to_string(quotas.redis_errors()) + "\n";
      if (scheduler) {
        const auto st = scheduler->stats();
        out += "# HELP sb_scheduler_released_total Scheduled messages published to their lane by this process.\n"
               "# TYPE sb_scheduler_released_total counter\nsb_scheduler_released_total " + std::to_string(st.released) +
               "\n# HELP sb_scheduler_publish_failures_total Scheduled messages Kafka did not acknowledge (retried next turn).\n"
               "# TYPE sb_scheduler_publish_failures_total counter\nsb_scheduler_publish_failures_total " + std::to_string(st.publish_failures) +
               "\n# HELP sb_scheduler_turn_failures_total Scheduler turns PostgreSQL failed.\n"
               "# TYPE sb_scheduler_turn_failures_total counter\nsb_scheduler_turn_failures_total " + std::to_string(st.turn_failures) + "\n";
      }
      out += "# HELP sb_sessions Sessions by status and engine node (node \"\" = not on an engine node); the same from every replica.\n"
             "# TYPE sb_sessions gauge\n";
      try {
        for (const auto& c : read_session_counts(pool))
          out += "sb_sessions{status=\"" + label_value(c.status) + "\",node=\"" + label_value(c.node) + "\"} " +
                 std::to_string(c.count) + "\n";
      } catch (const Error& e) {
        log::warn("intake.metrics_sessions_unreadable", {{"detail", e.what()}});
      }
      out += metrics::render();
      res.set_content(std::move(out), "text/plain; version=0.0.4");
    });

    server.set_exception_handler([this](const auto& req, auto& res, std::exception_ptr ep) { exception_reply(req, res, ep); });
    // Fills a JSON body for errors the server raises itself (413 oversize, 404 no route, 400 bad HTTP).
    server.set_error_handler([](const auto&, auto& res) {
      if (!res.body.empty()) return;
      if (res.status == 413)
        reply_error(res, 413, "request body too large (intake.max_body_bytes)");
      else if (res.status == 404)
        reply_error(res, 404, "no such route");
      else
        reply_error(res, res.status, "HTTP error " + std::to_string(res.status));
    });
    cors.install(server);
    latency.precreate("POST", "/v1/sessions/{}/messages");
    server.set_logger([this](const http::Request& req, const http::Response& res) {
      metrics.count(req, res.status);
      latency.observe(req);
    });
  }
};

IntakeServer::IntakeServer(const Config& config) : impl_(std::make_unique<Impl>(config)) {}
IntakeServer::~IntakeServer() { stop(); }

void IntakeServer::run() {
  const int bound = impl_->server.bind_listen(impl_->config.intake.listen, "intake.listen");
  impl_->bound_port = bound;
  log::info("intake.listening", {{"address", impl_->config.intake.listen}, {"port", std::to_string(bound)},
                                 {"io_threads", std::to_string(impl_->config.intake.io_threads)}});
  impl_->server.run();
}

void IntakeServer::stop() {
  if (impl_) impl_->server.stop();
}

int IntakeServer::port() const { return impl_->bound_port; }

bool IntakeServer::wait_until_ready(int timeout_ms) const {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  while (SteadyClock::now() < deadline) {
    if (impl_->server.running() && impl_->bound_port > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace sb
