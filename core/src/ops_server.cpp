#include "switchboard/core/ops_server.hpp"

#include <sstream>

#include "switchboard/core/metrics.hpp"

namespace sb {

OpsServer::OpsServer(const std::string& listen, const std::string& key, Readiness ready, Metrics metrics) {
  if (listen.empty()) return;
  http::ServerOptions options;
  options.io_threads = 1;
  options.blocking_threads = 2;  // readiness checks wait on Kafka/PostgreSQL: keep them off the IO thread
  options.max_body_bytes = 64 * 1024;
  server_ = std::make_unique<http::Server>(options);
  server_->Get("/health", [](const http::Request&, http::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server_->Get("/health/ready", [ready](const http::Request&, http::Response& res) {
    const std::string missing = ready();
    res.status = missing.empty() ? 200 : 503;
    res.set_content(missing.empty() ? R"({"status":"ready"})" : R"({"status":"not ready","detail":")" + missing + "\"}",
                    "application/json");
  });
  server_->Get("/metrics", [metrics](const http::Request&, http::Response& res) {
    std::ostringstream out;
    for (const auto& m : metrics())
      out << "# HELP " << m.name << ' ' << m.help << "\n# TYPE " << m.name << ' ' << m.type << '\n'
          << m.name << (m.labels.empty() ? "" : "{" + m.labels + "}") << ' ' << m.value << '\n';
    out << metrics::render();  // the process's prometheus-cpp families (histograms, labelled series)
    res.set_content(out.str(), "text/plain; version=0.0.4");
  });
  server_->set_error_handler([](const http::Request&, http::Response& res) {
    if (res.body.empty()) res.set_content(R"({"error":"HTTP error )" + std::to_string(res.status) + "\"}", "application/json");
  });
  port_ = server_->bind_listen(listen, key);
  server_->start();  // its own IO thread; start() returns once the threads exist
}

OpsServer::~OpsServer() {
  if (server_) server_->stop();
}

}  // namespace sb
