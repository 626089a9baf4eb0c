#include "switchboard/workers/simulator.hpp"

#include <chrono>
#include <mutex>
#include <thread>

#include "callback_sender.hpp"
#include "cloud_api.hpp"
#include "control_api.hpp"
#include "engine_api.hpp"
#include "legacy_api.hpp"
#include "records.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

http::ServerOptions server_options() {
  http::ServerOptions o;
  o.io_threads = 2;
  o.blocking_threads = 1;  // every route is asynchronous: latency is a timer, not a sleeping thread
  o.max_body_bytes = 1 << 20;
  o.idle_timeout_ms = 60000;
  return o;
}

sim::CallbackSender::Options sender_options(const SimulatorConfig& c) {
  return {c.callback_retries, c.callback_backoff_ms, c.callback_timeout_ms};
}

}  // namespace

// The server's handlers reach the shapes and the records, and the callback sender's timers run
// on the server: ~Impl stops the server first (joining its threads), then the sender, so
// neither side reaches the other after that.
struct Simulator::Impl {
  SimulatorConfig config;
  http::Server server{server_options()};
  sim::SendLog sends{static_cast<std::size_t>(config.log_max_sends)};
  sim::SessionLifetimes lifetimes{config.name};
  sim::AuthStore auth{config.auth_store};
  sim::CallbackSender callbacks{sender_options(config),
                                [this](std::chrono::milliseconds d, std::function<void()> fn) { server.after(d, std::move(fn)); }};
  sim::Context ctx{config, callbacks, sends, lifetimes, auth,
                   [this](std::chrono::milliseconds d, std::function<void()> fn) { server.after(d, std::move(fn)); }};
  sim::LegacyApi legacy{ctx, server};
  sim::EngineApi engine{ctx, server};
  sim::CloudApi cloud{ctx, server};
  sim::ControlApi control{ctx, server, engine, cloud};

  std::mutex run_mu;
  bool stopping = false;
  std::atomic<int> bound_port{0};

  explicit Impl(const SimulatorConfig& c) : config(c) { routes(); }
  ~Impl() {
    server.stop();
    callbacks.shut_down();
  }

  void routes() {
    legacy.routes();
    engine.routes();
    control.routes();
    cloud.routes();  // last: its /{version}/{id} pattern is the broadest
    server.async_route("GET", "/health", [](const http::Request&, http::Responder respond) { respond(sim::reply(200, {{"status", "ok"}})); });
    server.set_exception_handler([](const http::Request& req, http::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log::error("simulator.handler_failed", {{"path", req.path}, {"error", what}});
      res = sim::reply(500, {{"error", "internal error: " + what}});
    });
    server.set_error_handler([](const http::Request& req, http::Response& res) {
      if (res.body.empty()) res = sim::reply(res.status, {{"error", "no route for " + req.method + " " + req.path}});
    });
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
                                    {"name", s.config.name},
                                    {"latency_ms", std::to_string(s.config.latency_ms)},
                                    {"latency_jitter_ms", std::to_string(s.config.latency_jitter_ms)},
                                    {"failure_rate", std::to_string(s.config.failure_rate)},
                                    {"dedupe", s.config.dedupe ? "true" : "false"},
                                    {"auth_store", s.config.auth_store.empty() ? "memory" : s.config.auth_store},
                                    {"cloud_api_webhook_url", s.config.cloud_api.webhook_url}});
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
