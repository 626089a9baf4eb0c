#include "session_system.hpp"

#include "intake_api.hpp"
#include "switchboard/core/kafka.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using nlohmann::json;

namespace sbtest {

Receiver::Receiver() {
  server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    bodies.push_back(json::parse(req.body));
    res.status = 204;
  });
  port = server.bind_to_any_port("127.0.0.1");
  thread = std::thread([this] { server.listen_after_bind(); });
}

Receiver::~Receiver() {
  server.stop();
  thread.join();
}

std::vector<json> Receiver::of_type(const std::string& type) {
  std::lock_guard lock(mu);
  std::vector<json> out;
  for (const auto& b : bodies)
    if (b["type"] == type) out.push_back(b);
  return out;
}

SessionSystem::SessionSystem(TestStack& stack, const std::string& not_working, const std::function<void(sb::Config&)>& tweak) {
  auto& c = stack.config;
  c.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
  c.simulator.latency_ms = 1;
  c.simulator.latency_jitter_ms = 1;
  c.provider.url = "http://127.0.0.1:" + std::to_string(sim_port);
  c.intake.listen = "127.0.0.1:" + std::to_string(intake_port);
  c.engine.nodes["sim"] = sb::EngineNode{"sim", "http://127.0.0.1:" + std::to_string(sim_port), "", "node-hmac-key"};
  c.engine.default_node = "sim";
  c.sessions.not_working = not_working;
  c.sessions.hold_poll_ms = 100;
  c.webhooks.allow_cidrs = "127.0.0.0/8";
  // The simulator's Graph paths stand in for graph.facebook.com, its callbacks signed as Meta's.
  c.cloud_api.graph_url = "http://127.0.0.1:" + std::to_string(sim_port);
  c.cloud_api.app_secret = "meta-app-secret";
  c.cloud_api.verify_token = "meta-verify";
  c.simulator.cloud_api.access_token = "EAAG-test-token";
  c.simulator.cloud_api.app_secret = "meta-app-secret";
  c.simulator.cloud_api.verify_token = "meta-verify";
  c.simulator.cloud_api.webhook_url = "http://127.0.0.1:" + std::to_string(intake_port) + "/v1/providers/cloud_api/webhook";
  c.webhooks.retry_poll_interval_ms = 100;
  c.callbacks.ops_listen = "127.0.0.1:" + std::to_string(callbacks_ops_port);
  if (tweak) tweak(c);
  stack.write_config();
  children.push_back(stack.spawn("simulator", {"simulator"}));
  children.push_back(stack.spawn("intake", {"intake"}));
  children.push_back(stack.spawn("worker-high", {"worker", "--lane", "high"}));
  children.push_back(stack.spawn("worker-default", {"worker", "--lane", "default"}));
  children.push_back(stack.spawn("callbacks", {"callbacks"}));
  children.push_back(stack.spawn("webhooks", {"webhooks"}));
  httplib::Client sim("127.0.0.1", sim_port), api("127.0.0.1", intake_port);
  REQUIRE(eventually([&] { auto r = sim.Get("/health"); return r && r->status == 200; }, 15000));
  REQUIRE(eventually([&] { auto r = api.Get("/health/ready"); return r && r->status == 200; }, 30000));
}

json session_of(httplib::Client& api, const std::string& key, const std::string& id) {
  auto r = call(api, "GET", "/v1/sessions/" + id, key);
  REQUIRE(r.status == 200);
  return r.body;
}

bool status_is(httplib::Client& api, const std::string& key, const std::string& id, const std::string& status) {
  auto r = call(api, "GET", "/v1/sessions/" + id, key);
  return r.status == 200 && r.body["status"] == status;
}

json sim_post(int port, const std::string& path, const json& body) {
  httplib::Client sim("127.0.0.1", port);
  auto r = sim.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  INFO(path << " → " << r->status << " " << r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

std::string wait_qr(httplib::Client& api, const std::string& key, const std::string& id, const std::string& not_this) {
  std::string value;
  REQUIRE(eventually([&] {
    auto r = call(api, "GET", "/v1/sessions/" + id + "/qr", key);
    if (r.status != 200) return false;
    value = r.body["value"];
    return value != not_this;
  }, 20000));
  return value;
}

std::vector<json> events(const sb::Config& config, const std::string& type,
                         const std::function<bool(const std::vector<json>&)>& enough) {
  TopicReader reader(config, config.topic("sb.events"));
  std::vector<json> out;
  reader.read_until([&](const auto& records) {
    out.clear();
    for (const auto& r : records) {
      auto e = json::parse(sb::kafka::value_of(r.get()));
      if (e["type"] == type) out.push_back(e);
    }
    return enough(out);
  }, 20000);
  return out;
}

double metric(int port, const std::string& name) {
  httplib::Client ops("127.0.0.1", port);
  auto r = ops.Get("/metrics");
  if (!r || r->status != 200) return -1;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

}  // namespace sbtest

namespace sbtest {
std::string pair_engine_session(httplib::Client& api, const std::string& key, int sim_port, const std::string& id, bool create) {
  if (create) {
    auto created = call(api, "POST", "/v1/sessions", key, json{{"id", id}, {"provider", "engine"}}.dump());
    INFO(created.body.dump());
    REQUIRE(created.status == 201);
  }
  const auto qr = wait_qr(api, key, id);
  const std::string account = sim_post(sim_port, "/sim/scan", {{"qr", qr}})["account"];
  REQUIRE(eventually([&] { return status_is(api, key, id, "WORKING"); }, 20000));
  return account;
}
}  // namespace sbtest
