#pragma once
// The whole sessions system as child processes for integration tests: the simulator as engine
// node "sim" (and as the Graph API), intake, lane workers, the callbacks worker and the webhook
// dispatcher — plus the helpers the sessions tests share (a recording webhook receiver, the
// simulator's control API, waits on session status and QR, an independent read of sb.events).
#include <httplib.h>

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "stack.hpp"

namespace sbtest {

// A webhook endpoint that records every body it receives.
struct Receiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::vector<nlohmann::json> bodies;
  Receiver();
  ~Receiver();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/hook"; }
  std::vector<nlohmann::json> of_type(const std::string& type);
};

struct SessionSystem {
  int sim_port = free_port(), intake_port = free_port(), callbacks_ops_port = free_port();
  std::vector<Child> children;
  // `tweak` adjusts the config (simulator delays, hold rules…) before the processes start.
  explicit SessionSystem(TestStack& stack, const std::string& not_working = "hold",
                         const std::function<void(sb::Config&)>& tweak = {});
};

nlohmann::json session_of(httplib::Client& api, const std::string& key, const std::string& id);
bool status_is(httplib::Client& api, const std::string& key, const std::string& id, const std::string& status);
// POSTs to the simulator's control API; requires 200 and returns the body.
nlohmann::json sim_post(int port, const std::string& path, const nlohmann::json& body);
// The current QR of a session pairing, once shown (and different from `not_this`).
std::string wait_qr(httplib::Client& api, const std::string& key, const std::string& id, const std::string& not_this = "");
// Events on sb.events of `type` (read independently of our dispatcher), once `enough` holds.
std::vector<nlohmann::json> events(
    const sb::Config& config, const std::string& type,
    const std::function<bool(const std::vector<nlohmann::json>&)>& enough = [](const auto& v) { return !v.empty(); });
// A Prometheus sample's value on an ops endpoint's /metrics (-1 when absent).
double metric(int port, const std::string& name);

}  // namespace sbtest

namespace sbtest {
// Creates (unless `create` is false) and starts engine session `id`, scans its QR at the
// simulator and waits for WORKING; returns the paired account.
std::string pair_engine_session(httplib::Client& api, const std::string& key, int sim_port, const std::string& id,
                                bool create = true);
}  // namespace sbtest
