#include "switchboard/core/ops_server.hpp"

#include <chrono>
#include <sstream>

namespace sb {

OpsServer::OpsServer(const std::string& listen, const std::string& key, Readiness ready, Metrics metrics) {
  if (listen.empty()) return;
  server_ = std::make_unique<HttpServer>();
  server_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server_->Get("/health/ready", [ready](const httplib::Request&, httplib::Response& res) {
    const std::string missing = ready();
    res.status = missing.empty() ? 200 : 503;
    res.set_content(missing.empty() ? R"({"status":"ready"})" : R"({"status":"not ready","detail":")" + missing + "\"}",
                    "application/json");
  });
  server_->Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
    std::ostringstream out;
    for (const auto& m : metrics())
      out << "# HELP " << m.name << ' ' << m.help << "\n# TYPE " << m.name << ' ' << m.type << '\n'
          << m.name << (m.labels.empty() ? "" : "{" + m.labels + "}") << ' ' << m.value << '\n';
    res.set_content(out.str(), "text/plain; version=0.0.4");
  });
  port_ = server_->bind_listen(listen, key);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

OpsServer::~OpsServer() {
  if (!server_) return;
  // stop() before the listen loop has started would be lost and join() would wait for ever.
  for (int i = 0; i < 200 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sb
