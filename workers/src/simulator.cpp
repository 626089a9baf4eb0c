#include "switchboard/workers/simulator.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

using json = nlohmann::json;

std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

http::Response reply(int status, const json& body) {
  http::Response res;
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  return res;
}

http::ServerOptions server_options() {
  http::ServerOptions o;
  o.io_threads = 2;
  o.blocking_threads = 1;  // every route is asynchronous: latency is a timer, not a sleeping thread
  o.max_body_bytes = 1 << 20;
  o.idle_timeout_ms = 60000;
  return o;
}

}  // namespace

struct Simulator::Impl {
  SimulatorConfig config;

  // Provider state (reached by the server's handlers: declared before the server).
  struct Sent {
    std::string provider_message_id;
    std::string tenant;
    std::string session;
    uint64_t count = 0;  // arrivals with this Idempotency-Key, the first included
  };
  std::mutex mu;
  std::unordered_map<std::string, Sent> by_key;  // Idempotency-Key (our message id) → first send
  struct Log {
    std::vector<std::string> first;       // first arrivals, in order
    std::vector<std::string> duplicates;  // ids that arrived more than once (listed once)
    uint64_t arrivals = 0;                // every arrival, duplicates included
  };
  std::map<std::pair<std::string, std::string>, Log> logs;  // (tenant, session)
  uint64_t accepted = 0;    // first arrivals
  uint64_t duplicates = 0;  // repeated arrivals (sent again when dedupe is off)
  uint64_t sends = 0;       // messages the provider "sent": first arrivals, or every arrival without dedupe
  uint64_t failures = 0;

  std::mutex run_mu;
  bool stopping = false;
  std::atomic<int> bound_port{0};

  http::Server server{server_options()};

  explicit Impl(const SimulatorConfig& c) : config(c) { routes(); }

  void routes() {
    server.async_route("POST", "/v1/messages", [this](const http::Request& req, http::Responder respond) { send(req, respond); });
    server.async_route("GET", "/v1/stats", [this](const http::Request&, http::Responder respond) {
      std::lock_guard lock(mu);
      respond(reply(200, {{"accepted", accepted}, {"duplicates", duplicates}, {"sends", sends}, {"failures", failures},
                          {"dedupe", config.dedupe}}));
    });
    server.async_route("GET", "/v1/log", [this](const http::Request& req, http::Responder respond) {
      if (!req.has_param("tenant") || !req.has_param("session"))
        return respond(reply(400, {{"error", "query parameters 'tenant' and 'session' are required"}}));
      json out = {{"message_ids", json::array()}, {"arrivals", 0}, {"duplicates", json::array()}};
      {
        std::lock_guard lock(mu);
        auto it = logs.find({req.get_param_value("tenant"), req.get_param_value("session")});
        if (it != logs.end()) out = {{"message_ids", it->second.first}, {"arrivals", it->second.arrivals}, {"duplicates", it->second.duplicates}};
      }
      respond(reply(200, out));
    });
    // What a provider adapter asks after a crash: did this message reach the provider, how often?
    server.async_route("GET", R"(/v1/messages/([^/]+))", [this](const http::Request& req, http::Responder respond) {
      std::lock_guard lock(mu);
      auto it = by_key.find(req.matches[1]);
      if (it == by_key.end()) return respond(reply(404, {{"error", "no message '" + req.matches[1] + "'"}}));
      respond(reply(200, {{"provider_message_id", it->second.provider_message_id}, {"count", it->second.count}}));
    });
    server.async_route("GET", "/health", [](const http::Request&, http::Responder respond) { respond(reply(200, {{"status", "ok"}})); });
    server.set_exception_handler([](const http::Request& req, http::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log::error("simulator.handler_failed", {{"path", req.path}, {"error", what}});
      res = reply(500, {{"error", "internal error: " + what}});
    });
    server.set_error_handler([](const http::Request& req, http::Response& res) {
      if (res.body.empty()) res = reply(res.status, {{"error", "no route for " + req.method + " " + req.path}});
    });
  }

  void send(const http::Request& req, const http::Responder& respond) {
    std::string key = req.get_header_value("Idempotency-Key");
    if (key.empty()) return respond(reply(400, {{"error", "missing Idempotency-Key header"}}));
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      return respond(reply(400, {{"error", std::string("body is not valid JSON: ") + e.what()}}));
    }
    if (!body.is_object()) return respond(reply(400, {{"error", "body must be a JSON object"}}));
    for (const char* field : {"tenant", "session", "to", "text"}) {
      auto it = body.find(field);
      if (it == body.end() || !it->is_string())
        return respond(reply(400, {{"error", std::string("'") + field + "' must be a string"}}));
    }
    std::string tenant = body["tenant"].get<std::string>();
    std::string session = body["session"].get<std::string>();
    if (tenant.empty() || session.empty()) return respond(reply(400, {{"error", "'tenant' and 'session' must not be empty"}}));

    // Latency first (a slow failure is as realistic as a slow success): a timer, no thread held.
    int delay_ms = std::max(0, config.latency_ms);
    if (config.latency_jitter_ms > 0) delay_ms += std::uniform_int_distribution<int>(0, config.latency_jitter_ms)(rng());
    auto finish = [this, respond, key = std::move(key), tenant = std::move(tenant), session = std::move(session), delay_ms] {
      respond(outcome(key, tenant, session, delay_ms));
    };
    if (delay_ms > 0) server.after(std::chrono::milliseconds(delay_ms), std::move(finish));
    else finish();
  }

  http::Response outcome(const std::string& key, const std::string& tenant, const std::string& session, int delay_ms) {
    if (config.failure_rate > 0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng()) < config.failure_rate) {
      {
        std::lock_guard lock(mu);
        ++failures;
      }
      log::debug("simulator.send", {{"tenant", tenant}, {"session", session}, {"message_id", key},
                                    {"outcome", "simulated_failure"}, {"latency_ms", std::to_string(delay_ms)}});
      return reply(503, {{"error", "simulated failure"}});
    }
    std::string provider_id;
    bool repeat = false;
    bool mismatch = false;
    {
      std::lock_guard lock(mu);
      auto& log = logs[{tenant, session}];
      ++log.arrivals;
      auto it = by_key.find(key);
      if (it != by_key.end()) {
        repeat = true;
        ++duplicates;
        if (++it->second.count == 2) log.duplicates.push_back(key);
        mismatch = it->second.tenant != tenant || it->second.session != session;
        // Without dedupe a repeat is a second message on the wire, with its own provider id.
        provider_id = config.dedupe ? it->second.provider_message_id : "sim_" + new_uuid_v7();
        if (!config.dedupe) ++sends;
      } else {
        provider_id = "sim_" + new_uuid_v7();
        by_key.emplace(key, Sent{provider_id, tenant, session, 1});
        log.first.push_back(key);
        ++accepted;
        ++sends;
      }
    }
    if (mismatch)
      log::warn("simulator.idempotency_key_reused",
                {{"tenant", tenant}, {"session", session}, {"message_id", key}, {"provider_message_id", provider_id}});
    if (repeat && !config.dedupe)
      log::warn("simulator.sent_again", {{"tenant", tenant}, {"session", session}, {"message_id", key}, {"provider_message_id", provider_id}});
    log::debug("simulator.send", {{"tenant", tenant},
                                  {"session", session},
                                  {"message_id", key},
                                  {"provider_message_id", provider_id},
                                  {"outcome", repeat ? "duplicate" : "accepted"},
                                  {"latency_ms", std::to_string(delay_ms)}});
    // "duplicate" reports what the provider did: only a deduplicating provider recognises one.
    return reply(200, {{"provider_message_id", provider_id}, {"duplicate", repeat && config.dedupe}});
  }
};

Simulator::Simulator(const SimulatorConfig& config) : impl_(std::make_unique<Impl>(config)) {}

Simulator::~Simulator() { stop(); }

void Simulator::run() {
  Impl& s = *impl_;
  int bound = 0;
  {
    std::lock_guard lock(s.run_mu);
    if (s.stopping) return;  // stop() came first
    bound = s.server.bind_listen(s.config.listen, "simulator.listen");
    s.bound_port = bound;
    s.server.start();
  }
  const std::string host = parse_listen(s.config.listen, "simulator.listen").first;
  log::info("simulator.listening", {{"listen", host + ":" + std::to_string(bound)},
                                    {"latency_ms", std::to_string(s.config.latency_ms)},
                                    {"latency_jitter_ms", std::to_string(s.config.latency_jitter_ms)},
                                    {"failure_rate", std::to_string(s.config.failure_rate)},
                                    {"dedupe", s.config.dedupe ? "true" : "false"}});
  s.server.run();  // blocks until stop()
  log::info("simulator.stopped", {{"listen", host + ":" + std::to_string(bound)}});
}

void Simulator::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.run_mu);
    s.stopping = true;
  }
  // Closes idle keep-alive connections at once (a pooled curl connection doesn't delay it);
  // from one of our own handlers it only initiates the stop.
  s.server.stop();
}

int Simulator::port() const { return impl_->bound_port.load(); }

bool Simulator::wait_until_ready(int timeout_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (impl_->server.running() && impl_->bound_port > 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace sb
