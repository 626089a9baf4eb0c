// Engine-node placement and fencing without servers of our own: the placement choice itself,
// and the generation fence between two in-process simulator nodes sharing an auth store (the
// engine adapters' real HTTP clients against them).
#include <catch2/catch.hpp>
#include <httplib.h>

#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <random>

#include "../support/simulator_thread.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/workers/providers/engine_client.hpp"
#include "switchboard/workers/providers/engine_provider.hpp"

using nlohmann::json;
using sb::PlacementCandidate;

TEST_CASE("placement: the node with the most free capacity, ties broken by name, never a full one", "[unit][placement]") {
  CHECK(sb::choose_node({}) == std::nullopt);
  CHECK(sb::choose_node({{"a", 10, 3}, {"b", 10, 1}, {"c", 5, 0}}) == "b");  // free: 7, 9, 5
  CHECK(sb::choose_node({{"b", 10, 2}, {"a", 10, 2}}) == "a");               // a tie: by name, whatever the order
  CHECK(sb::choose_node({{"a", 10, 2}, {"b", 10, 2}}) == "a");
  CHECK(sb::choose_node({{"a", 2, 2}, {"b", 1, 1}}) == std::nullopt);        // all full
  CHECK(sb::choose_node({{"a", 2, 5}, {"b", 0, 0}, {"c", 1, 0}}) == "c");    // over-full or zero capacity: never
  CHECK(sb::choose_node({{"x", 100, 99}}) == "x");

  // Placing one session at a time fills nodes evenly and stops exactly at the total capacity.
  std::vector<PlacementCandidate> nodes{{"n1", 7, 0}, {"n2", 5, 0}, {"n3", 3, 0}};
  int placed = 0;
  while (auto n = sb::choose_node(nodes)) {
    for (auto& c : nodes)
      if (c.name == *n) ++c.placed;
    ++placed;
    for (const auto& c : nodes) REQUIRE(c.placed <= c.capacity);
  }
  CHECK(placed == 15);
  for (const auto& c : nodes) CHECK(c.placed == c.capacity);
}

namespace {

sb::SimulatorConfig node_config(const std::string& name, const std::string& auth_store) {
  sb::SimulatorConfig c;
  c.listen = "127.0.0.1:0";
  c.name = name;
  c.latency_ms = 0;
  c.latency_jitter_ms = 0;
  c.auth_store = auth_store;
  c.engine.start_delay_ms = 10;
  c.delivered_delay_ms = 0;
  c.read_delay_ms = 0;
  return c;
}

std::string temp_dir() {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() / ("sb-placement-" + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

int post(int port, const std::string& path, int64_t generation, const json& body = json::object()) {
  httplib::Client http("127.0.0.1", port);
  httplib::Headers h;
  if (generation > 0) h.emplace(sb::kGenerationHeader, std::to_string(generation));
  auto r = http.Post(path.c_str(), h, body.dump(), "application/json");
  REQUIRE(r);
  return r->status;
}

}  // namespace

TEST_CASE("fencing: nodes of one storage group refuse a call older than the session's newest placement", "[unit][placement]") {
  const auto dir = temp_dir();
  sbtest::SimulatorThread a(node_config("a", dir)), b(node_config("b", dir));
  const json create = {{"name", "s1"}, {"start", true}};

  CHECK(post(a.port(), "/api/sessions", 1, create) == 201);  // placed on a, generation 1
  CHECK(post(b.port(), "/api/sessions", 2, create) == 201);  // moved to b, generation 2
  // The old owner's calls — on its own node or another — are refused from now on.
  CHECK(post(a.port(), "/api/sessions/s1/restart", 1) == 409);
  CHECK(post(b.port(), "/api/sessions/s1/stop", 1) == 409);
  // The current generation (or a newer one) passes; a newer one fences the older ones.
  CHECK(post(a.port(), "/api/sessions/s1/stop", 2) == 201);
  CHECK(post(a.port(), "/api/sessions/s1/start", 3) == 201);
  CHECK(post(b.port(), "/api/sessions/s1/stop", 2) == 409);
  // Without the header (a client that knows nothing of placements, like WAHA's own UI): not fenced.
  CHECK(post(b.port(), "/api/sessions/s1/stop", 0) == 201);

  // The adapters: a lifecycle call with a stale generation throws StalePlacement (nothing
  // changes, never FAILED); a send with one is certainly not sent and goes back to its claim.
  sb::EngineNode node_b{"b", b.url(), "", "k"};
  sb::EngineClient stale(node_b, 2000, 2);
  CHECK_THROWS_AS(stale.start("s1", "http://127.0.0.1:9/hook", "k", "t", "s1"), sb::StalePlacement);
  sb::EngineClient current(node_b, 2000, 3);
  CHECK_NOTHROW(current.start("s1", "http://127.0.0.1:9/hook", "k", "t", "s1"));

  sb::EngineConfig engine;
  engine.nodes["b"] = node_b;
  sb::EngineProvider provider(engine, sb::SecretBox());
  sb::SendRequest req;
  req.tenant_id = "t";
  req.session = "s1";
  req.message_id = "m1";
  req.to = "+15550001111";
  req.text = "hi";
  req.route.provider = "engine";
  req.route.node = "b";
  req.route.engine_name = "s1";
  req.route.generation = 2;
  auto r = provider.send(req);
  CHECK(r.status == sb::SendResult::Status::RetryableError);
  CHECK(r.reroute);
  CHECK_FALSE(r.maybe_delivered);
  std::filesystem::remove_all(dir);
}

TEST_CASE("placement: the placer's settings and engine.nodes capacity/storage_group, documented and validated", "[unit][placement][config]") {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  const auto documented = sb::load_config(std::string(SWITCHBOARD_DEFAULT_SCHEMAS_DIR) + "/../config/switchboard.yaml", none);
  const sb::PlacerConfig defaults;
  CHECK(documented.placer.probe_interval_ms == defaults.probe_interval_ms);
  CHECK(documented.placer.failure_threshold == defaults.failure_threshold);
  CHECK(documented.placer.lease_ttl_ms == defaults.lease_ttl_ms);
  CHECK(documented.placer.max_starts_per_node == defaults.max_starts_per_node);
  CHECK(documented.placer.start_stagger_ms == defaults.start_stagger_ms);
  CHECK(documented.placer.start_jitter == defaults.start_jitter);
  CHECK(documented.intake.admin_key.empty());

  auto c = sb::parse_config("engine:\n  nodes:\n    w1: {url: \"http://w1:3000\", webhook_hmac_key: k, capacity: 7, storage_group: eu}\n"
                            "    w2: {url: \"http://w2:3000\", webhook_hmac_key: k}\nplacer:\n  start_stagger_ms: 5\n",
                            "test.yaml", none);
  CHECK(c.engine.nodes.at("w1").capacity == 7);
  CHECK(c.engine.nodes.at("w1").storage_group == "eu");
  CHECK(c.engine.nodes.at("w2").capacity == sb::EngineNode{}.capacity);
  CHECK(c.engine.nodes.at("w2").storage_group == "default");
  CHECK(c.placer.start_stagger_ms == 5);
  CHECK_THROWS_AS(sb::parse_config("engine:\n  nodes:\n    w1: {url: \"http://w1\", webhook_hmac_key: k, capacity: lots}\n", "t.yaml", none),
                  sb::ConfigError);
  CHECK_THROWS_AS(sb::parse_config("placer:\n  failure_threshold: 0\n", "t.yaml", none), sb::ConfigError);
}
