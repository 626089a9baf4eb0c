#pragma once
// The operator's window into a background process (lane worker, webhook dispatcher):
//   GET /health        200 while the process runs (liveness)
//   GET /health/ready  200 when its dependencies answer, else 503 with what is missing
//   GET /metrics       Prometheus text exposition of the process's counters
// Runs on its own IO thread (sb::http::Server); off when the listen address is empty.
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "switchboard/core/http_server.hpp"

namespace sb {

class OpsServer {
 public:
  struct Metric {
    std::string name, help, type;  // type: counter | gauge
    double value = 0;
    std::string labels;            // e.g. lane="high" (without braces)
  };
  // Empty when ready, else what is not ("kafka unreachable").
  using Readiness = std::function<std::string()>;
  using Metrics = std::function<std::vector<Metric>()>;

  // listen: "host:port" (port 0: any free one) or empty for no server; key names the config key.
  OpsServer(const std::string& listen, const std::string& key, Readiness ready, Metrics metrics);
  ~OpsServer();  // stops the server
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;
  int port() const { return port_; }  // 0 when off

 private:
  std::unique_ptr<http::Server> server_;
  int port_ = 0;
};

}  // namespace sb
