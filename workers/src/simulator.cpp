#include "switchboard/workers/simulator.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

using json = nlohmann::json;

// Set on the server's worker threads, so stop() called from a handler does not wait for itself.
thread_local bool in_handler_thread = false;

std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}


// httplib (0.11) keeps an idle keep-alive connection's thread waiting for the next request for
// up to the keep-alive timeout, and Server::stop() joins those threads: a client holding a pooled
// connection (curl does) would delay stop() by that long. After the listening socket is closed we
// half-close (SHUT_RD) every accepted connection on our port: idle ones see EOF and end at once;
// a request in progress still writes its response (the write side stays open).
int half_close_accepted(int port) {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  const int own = dirfd(dir);
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;  // not a socket
    int local_port = -1;
    if (local.ss_family == AF_INET) local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    else if (local.ss_family == AF_INET6) local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    if (local_port != port) continue;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage peer{};
    len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;  // not connected
    if (shutdown(fd, SHUT_RD) == 0) ++n;
  }
  closedir(dir);
  return n;
}


}  // namespace

struct Simulator::Impl {
  SimulatorConfig config;
  HttpServer server;

  std::atomic<int> bound_port{0};
  std::atomic<bool> serving{false};

  // run()/stop() coordination.
  std::mutex run_mu;
  std::condition_variable run_cv;
  bool stopping = false;
  bool run_active = false;
  bool server_stopped = false;  // httplib asserts on a second Server::stop() while winding down

  // Provider state.
  struct Sent {
    std::string provider_message_id;
    std::string tenant;
    std::string session;
  };
  std::mutex mu;
  std::unordered_map<std::string, Sent> by_key;  // Idempotency-Key → first send
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> arrivals;  // (tenant, session)
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  uint64_t failures = 0;

  explicit Impl(const SimulatorConfig& c) : config(c) { routes(); }

  void routes() {
    // One thread per concurrent keep-alive connection (the workers' curl pools hold them open).
    // httplib builds the pool inside listen_after_bind(), after is_running() turns true and
    // before the accept loop: `serving` tells wait_until_ready() the 128 threads exist.
    server.new_task_queue = [this] {
      auto* pool = new httplib::ThreadPool(128);
      serving = true;
      return pool;
    };
    // An idle connection holds one of the 128 threads until this timeout: keep it short so a
    // client that went quiet doesn't starve new ones (curl just reconnects).
    server.set_keep_alive_timeout(5);
    server.set_payload_max_length(1 << 20);

    server.Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
      in_handler_thread = true;
      send(req, res);
    });
    server.Get("/v1/stats", [this](const httplib::Request&, httplib::Response& res) {
      in_handler_thread = true;
      std::lock_guard lock(mu);
      reply(res, 200, {{"accepted", accepted}, {"duplicates", duplicates}, {"failures", failures}});
    });
    server.Get("/v1/log", [this](const httplib::Request& req, httplib::Response& res) {
      in_handler_thread = true;
      if (!req.has_param("tenant") || !req.has_param("session")) {
        reply(res, 400, {{"error", "query parameters 'tenant' and 'session' are required"}});
        return;
      }
      json ids = json::array();
      {
        std::lock_guard lock(mu);
        auto it = arrivals.find({req.get_param_value("tenant"), req.get_param_value("session")});
        if (it != arrivals.end()) ids = it->second;
      }
      reply(res, 200, {{"message_ids", std::move(ids)}});
    });
    server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      in_handler_thread = true;
      reply(res, 200, {{"status", "ok"}});
    });
    server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log::error("simulator.handler_failed", {{"path", req.path}, {"error", what}});
      reply(res, 500, {{"error", "internal error: " + what}});
    });
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (res.body.empty())
        reply(res, res.status, {{"error", "no route for " + req.method + " " + req.path}});
    });
  }

  void send(const httplib::Request& req, httplib::Response& res) {
    const std::string key = req.get_header_value("Idempotency-Key");
    if (key.empty()) {
      reply(res, 400, {{"error", "missing Idempotency-Key header"}});
      return;
    }
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      reply(res, 400, {{"error", std::string("body is not valid JSON: ") + e.what()}});
      return;
    }
    if (!body.is_object()) {
      reply(res, 400, {{"error", "body must be a JSON object"}});
      return;
    }
    for (const char* field : {"tenant", "session", "to", "text"}) {
      auto it = body.find(field);
      if (it == body.end() || !it->is_string()) {
        reply(res, 400, {{"error", std::string("'") + field + "' must be a string"}});
        return;
      }
    }
    const std::string tenant = body["tenant"].get<std::string>();
    const std::string session = body["session"].get<std::string>();
    if (tenant.empty() || session.empty()) {
      reply(res, 400, {{"error", "'tenant' and 'session' must not be empty"}});
      return;
    }

    // Latency first (a slow failure is as realistic as a slow success), outside the lock.
    int delay_ms = std::max(0, config.latency_ms);
    if (config.latency_jitter_ms > 0)
      delay_ms += std::uniform_int_distribution<int>(0, config.latency_jitter_ms)(rng());
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));

    if (config.failure_rate > 0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng()) < config.failure_rate) {
      {
        std::lock_guard lock(mu);
        ++failures;
      }
      log::debug("simulator.send", {{"tenant", tenant}, {"session", session}, {"message_id", key},
                                    {"outcome", "simulated_failure"}, {"latency_ms", std::to_string(delay_ms)}});
      reply(res, 503, {{"error", "simulated failure"}});
      return;
    }

    std::string provider_id;
    bool duplicate = false;
    bool mismatch = false;
    {
      std::lock_guard lock(mu);
      auto it = by_key.find(key);
      if (it != by_key.end()) {
        duplicate = true;
        ++duplicates;
        provider_id = it->second.provider_message_id;
        mismatch = it->second.tenant != tenant || it->second.session != session;
      } else {
        provider_id = "sim_" + new_uuid_v7();
        by_key.emplace(key, Sent{provider_id, tenant, session});
        arrivals[{tenant, session}].push_back(key);
        ++accepted;
      }
    }
    if (mismatch)
      log::warn("simulator.idempotency_key_reused",
                {{"tenant", tenant}, {"session", session}, {"message_id", key}, {"provider_message_id", provider_id}});
    log::debug("simulator.send", {{"tenant", tenant},
                                  {"session", session},
                                  {"message_id", key},
                                  {"provider_message_id", provider_id},
                                  {"outcome", duplicate ? "duplicate" : "accepted"},
                                  {"latency_ms", std::to_string(delay_ms)}});
    reply(res, 200, {{"provider_message_id", provider_id}, {"duplicate", duplicate}});
  }
};

Simulator::Simulator(const SimulatorConfig& config) : impl_(std::make_unique<Impl>(config)) {}

Simulator::~Simulator() { stop(); }

void Simulator::run() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.run_mu);
    if (s.stopping) return;  // stop() came first
    s.run_active = true;
  }
  struct Done {
    Impl& s;
    ~Done() {
      // Notify under the lock: once stop() sees run_active == false the owner may destroy us.
      std::lock_guard lock(s.run_mu);
      s.run_active = false;
      s.run_cv.notify_all();
    }
  } done{s};

  const int bound = s.server.bind_listen(s.config.listen, "simulator.listen");
  const std::string host = parse_listen(s.config.listen, "simulator.listen").first;
  s.bound_port = bound;
  log::info("simulator.listening", {{"listen", host + ":" + std::to_string(bound)},
                                    {"latency_ms", std::to_string(s.config.latency_ms)},
                                    {"latency_jitter_ms", std::to_string(s.config.latency_jitter_ms)},
                                    {"failure_rate", std::to_string(s.config.failure_rate)}});
  s.server.listen_after_bind();  // blocks until stop()
  log::info("simulator.stopped", {{"listen", host + ":" + std::to_string(bound)}});
}

void Simulator::stop() {
  Impl& s = *impl_;
  std::unique_lock lock(s.run_mu);
  s.stopping = true;
  // run() may be between bind and listen: wait until it serves, then stop it exactly once.
  auto stop_server_once = [&] {
    if (s.server_stopped || !s.server.is_running()) return;
    s.server_stopped = true;
    lock.unlock();
    s.server.stop();
    lock.lock();
  };
  if (!s.run_active) return;
  if (in_handler_thread) {
    // Called from one of our own handlers: close the listener, but don't wait for ourselves.
    stop_server_once();
    return;
  }
  // Wait for run() to return (no time limit: the owner may destroy us as soon as we return).
  while (s.run_active) {
    stop_server_once();
    if (s.server_stopped) {
      const int port = s.bound_port.load();
      lock.unlock();
      if (port > 0) half_close_accepted(port);
      lock.lock();
    }
    if (!s.run_active) break;
    s.run_cv.wait_for(lock, std::chrono::milliseconds(s.server_stopped ? 20 : 1));
  }
}

int Simulator::port() const { return impl_->bound_port.load(); }

bool Simulator::wait_until_ready(int timeout_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (impl_->serving.load() && impl_->server.is_running()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace sb
