// The contracts in schemas/ and the operator files in compose/ and deploy/, checked against live
// processes by independent tools from PyPI (pinned in scripts/lib/python.sh): schemathesis fuzzes
// intake against schemas/openapi.yaml, Python jsonschema validates what a pipeline puts on
// sb.events, the Python example producer must land where intake lands, and every dashboard and
// alert query must name a metric the processes really expose.
#include <csignal>
#include <cstdlib>
#include <catch2/catch.hpp>
#include <sstream>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "intake_api.hpp"
#include "python_tool.hpp"
#include "session_system.hpp"
#include "stack.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/core/webhook_store.hpp"

using nlohmann::json;
using sbtest::Child;
using sbtest::TestStack;

namespace {

std::string tail(const std::string& s, std::size_t n = 20000) { return s.size() > n ? s.substr(s.size() - n) : s; }

std::string base_url(int port) { return "http://127.0.0.1:" + std::to_string(port); }

void wait_healthy(int port, const std::string& path, int timeout_ms = 30000) {
  httplib::Client c("127.0.0.1", port);
  REQUIRE(sbtest::eventually([&] { auto r = c.Get(path.c_str()); return r && r->status == 200; }, timeout_ms));
}

// The processes of one lane end to end: simulator (the provider), intake, the default lane's
// worker and a webhook dispatcher, each on its own ports (ops endpoints included).
struct Pipeline {
  TestStack& stack;
  int sim_port = sbtest::free_port(), intake_port = sbtest::free_port();
  int worker_ops = sbtest::free_port(), webhooks_ops = sbtest::free_port();
  std::optional<Child> simulator;
  std::vector<Child> roles;

  explicit Pipeline(TestStack& s) : stack(s) {
    auto& c = stack.config;
    c.simulator.listen = "127.0.0.1:" + std::to_string(sim_port);
    c.simulator.latency_ms = 1;
    c.simulator.latency_jitter_ms = 1;
    c.provider.url = base_url(sim_port);
    c.intake.listen = "127.0.0.1:" + std::to_string(intake_port);
    c.worker.ops_listen = "127.0.0.1:" + std::to_string(worker_ops);
    c.worker.provider_attempts = 2;
    c.worker.provider_backoff_ms = 50;
    c.webhooks.ops_listen = "127.0.0.1:" + std::to_string(webhooks_ops);
    c.webhooks.allow_cidrs = "127.0.0.0/8";
    c.webhooks.retry_poll_interval_ms = 100;
    c.webhooks.endpoint_cache_ms = 100;
    c.webhooks.commit_interval_ms = 200;
    c.webhooks.timeout_ms = 3000;
    stack.write_config();
  }

  void start() {
    start_simulator();
    roles.push_back(stack.spawn("intake", {"intake"}));
    roles.push_back(stack.spawn("worker-default", {"worker", "--lane", "default"}));
    roles.push_back(stack.spawn("webhooks", {"webhooks"}));
    wait_healthy(intake_port, "/health/ready");
    wait_healthy(worker_ops, "/health/ready");
    wait_healthy(webhooks_ops, "/health/ready");
  }

  // (Re)starts the provider with the simulator settings now in stack.config.
  void start_simulator() {
    if (simulator) {
      simulator->signal(SIGTERM);
      REQUIRE(simulator->wait(10000) >= 0);
      simulator.reset();
    }
    stack.write_config();
    simulator.emplace(stack.spawn("simulator-" + std::to_string(++simulator_starts), {"simulator"}));
    wait_healthy(sim_port, "/health", 15000);
  }

  std::string send(const std::string& key, const std::string& body) {
    httplib::Client api("127.0.0.1", intake_port);
    auto r = api.Post("/v1/sessions/main/messages", sbtest::bearer(key), body, "application/json");
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 202);
    return json::parse(r->body)["id"];
  }

  // Waits for a message to reach a final status and returns it.
  std::string final_status(const std::string& key, const std::string& id) {
    httplib::Client api("127.0.0.1", intake_port);
    std::string status;
    sbtest::eventually([&] {
      auto r = api.Get(("/v1/messages/" + id).c_str(), sbtest::bearer(key));
      if (r && r->status == 200) status = json::parse(r->body)["status"];
      return status == "sent" || status == "failed";
    }, 30000);
    return status;
  }

  std::string scrape(int port, const std::string& name) {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const auto path = stack.log_dir + "/" + name + ".metrics";
    std::ofstream(path) << r->body;
    return path;
  }

 private:
  int simulator_starts = 0;
};

sb::WebhookEndpoint add_endpoint(TestStack& stack, const std::string& tenant, const std::string& url,
                                 std::vector<std::string> events) {
  sb::pg::Pool pool(stack.config.postgres);
  sb::WebhookEndpoint e;
  e.tenant_id = tenant;
  e.url = url;
  e.events = std::move(events);
  e.secret = sb::new_webhook_secret();
  return sb::WebhookStore(pool).create(e);
}

// A webhook receiver: 410 Gone on /gone (the dispatcher disables that endpoint), 500 on /fail
// (its breaker opens), 200 elsewhere.
struct ContractReceiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  ContractReceiver() {
    server.Post(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
      res.status = req.path == "/gone" ? 410 : req.path == "/fail" ? 500 : 200;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    REQUIRE(sbtest::eventually([this] { return server.is_running(); }, 5000));
  }
  ~ContractReceiver() {
    server.stop();
    thread.join();
  }
  std::string url(const std::string& path) const { return base_url(port) + path; }
};

std::string value_of(const sb::kafka::MessagePtr& m) { return {static_cast<const char*>(m->payload), m->len}; }

}  // namespace

TEST_CASE("contract: schemathesis against a live intake finds no 5xx and no answer outside openapi.yaml",
          "[integration][contract]") {
  TestStack stack("contract-schemathesis");
  stack.config.intake.listen = "127.0.0.1:0";
  stack.config.webhooks.allow_cidrs = "127.0.0.0/8";
  auto acme = stack.create_tenant("acme", {"main"});
  sbtest::InProcessIntake api(stack.config);
  const auto run = sbtest::run_python({"tests/contract/run_schemathesis.py", base_url(api.server.port()), acme.api_key,
                                       stack.log_dir + "/schemathesis-report"},
                                      stack.log_dir + "/schemathesis.log");
  INFO(tail(run.output));
  CHECK(run.exit_code == 0);
  // Not vacuous: the stateful phase got past creating things (a 201 or 202) and followed the
  // document's links from there.
  std::smatch links;
  REQUIRE(std::regex_search(run.output, links, std::regex(R"(API Links:\s+(\d+) covered)")));
  CHECK(std::stoi(links[1]) > 0);
}

TEST_CASE("contract: every event type a live pipeline puts on sb.events validates against events/event.json (jsonschema)",
          "[integration][contract][events]") {
  TestStack stack("contract-events", 3);
  Pipeline p(stack);
  auto acme = stack.create_tenant("acme", {"main"});
  ContractReceiver rx;
  add_endpoint(stack, acme.id, rx.url("/gone"), {"message.*"});  // its first delivery disables it
  add_endpoint(stack, acme.id, rx.url("/ok"), {"*"});
  p.start();

  const auto sent = p.send(acme.api_key, R"({"to":"+15551234567","text":"hello","priority":"default"})");
  CHECK(p.final_status(acme.api_key, sent) == "sent");
  // The provider now fails every call: the next message ends as message.failed (provider_failed).
  stack.config.simulator.failure_rate = 1.0;
  p.start_simulator();
  const auto failed = p.send(acme.api_key, R"({"to":"+15557654321","text":"will fail"})");
  CHECK(p.final_status(acme.api_key, failed) == "failed");

  sbtest::TopicReader events(stack.config, stack.topic("sb.events"));
  std::set<std::string> types;
  REQUIRE(events.read_until([&](const auto& records) {
    types.clear();
    for (const auto& r : records) types.insert(json::parse(value_of(r), nullptr, false).value("type", ""));
    return types.count("message.sent") && types.count("message.failed") && types.count("webhook.endpoint.disabled");
  }, 60000));
  const auto path = stack.log_dir + "/events.jsonl";
  {
    std::ofstream out(path);
    for (const auto& r : events.records()) out << value_of(r) << "\n";
  }
  const auto run = sbtest::run_python({"tests/contract/validate_events.py", path, "--types=" + std::string(sbtest::kPipelineEventTypes)}, stack.log_dir + "/validate_events.log");
  INFO(run.output);
  CHECK(run.exit_code == 0);
}

TEST_CASE("contract: dashboards and alert rules name only metrics that intake, workers and dispatchers expose, and promtool accepts each /metrics",
          "[integration][contract][metrics]") {
  TestStack stack("contract-metrics", 3);
  Pipeline p(stack);
  // One failed attempt opens an endpoint's breaker, for longer than this test runs.
  stack.config.webhooks.breaker_window = 1;
  stack.config.webhooks.breaker_min_attempts = 1;
  stack.config.webhooks.breaker_failure_ratio = 1.0;
  stack.config.webhooks.breaker_cool_down_s = 600;
  stack.write_config();
  auto acme = stack.create_tenant("acme", {"main"});
  ContractReceiver rx;
  add_endpoint(stack, acme.id, rx.url("/fail"), {"message.*"});
  p.start();
  // A poison record on the default lane: the worker moves it to sb.dlq.
  sb::kafka::Producer producer(stack.config.kafka);
  REQUIRE(producer.produce(stack.topic("sb.commands.default"), acme.id, "{not json").get().ok());
  const auto sent = p.send(acme.api_key, R"({"to":"+15551234567","text":"hello"})");
  CHECK(p.final_status(acme.api_key, sent) == "sent");  // so the per-route request counter has samples
  // Traffic on intake's other route families: each is timed under its route template.
  httplib::Client api("127.0.0.1", p.intake_port);
  CHECK(api.Get("/v1/sessions", sbtest::bearer(acme.api_key))->status == 200);
  CHECK(api.Get("/v1/webhooks", sbtest::bearer(acme.api_key))->status == 200);
  CHECK(api.Get("/v1/admin/nodes", sbtest::bearer(acme.api_key))->status / 100 == 4);  // an operator route, a tenant key
  CHECK(api.Post("/v1/providers/cloud_api/webhook", "{}", "application/json")->status / 100 == 4);  // unsigned callback
  CHECK(api.Get("/no/such/route")->status == 404);

  // The new series, with the values this traffic must have produced.
  auto intake_metric = [&](const std::string& series) { return sbtest::metric(p.intake_port, series); };
  const std::string latency = "sb_intake_request_duration_seconds_count";
  CHECK(intake_metric(latency + R"({method="POST",route="/v1/sessions/{}/messages"})") == 1);
  CHECK(intake_metric(latency + R"({method="GET",route="/v1/messages/{}"})") >= 1);
  CHECK(intake_metric(latency + R"({method="GET",route="/v1/sessions"})") == 1);
  CHECK(intake_metric(latency + R"({method="GET",route="/v1/webhooks"})") == 1);
  CHECK(intake_metric(latency + R"({method="GET",route="/v1/admin/nodes"})") == 1);
  CHECK(intake_metric(latency + R"({method="POST",route="/v1/providers/cloud_api/webhook"})") == 1);
  CHECK(intake_metric(latency + R"({method="GET",route="unmatched"})") == 1);
  CHECK(intake_metric(R"(sb_intake_requests_total{method="POST",route="/v1/sessions/{}/messages",status="202"})") == 1);
  // sb.dlq holds the poison record; intake's gauge reads it within a lag turn.
  const std::string dlq = R"(sb_dlq_depth{topic=")" + stack.topic("sb.dlq") + R"("})";
  CHECK(sbtest::eventually([&] { return intake_metric(dlq) == 1; }, 15000, 100));
  CHECK(intake_metric(R"(sb_dlq_depth{topic=")" + stack.topic("sb.webhooks.dlq") + R"("})") == 0);
  // message.sent reached /fail, which answered 500: that endpoint's breaker is open.
  CHECK(sbtest::eventually([&] { return sbtest::metric(p.webhooks_ops, R"(sb_webhook_breakers{state="open"})") == 1; },
                           15000, 100));
  CHECK(sbtest::metric(p.webhooks_ops, "sb_webhook_breaker_opened_total") == 1);
  // Error counters exist on every process with such a client (their increments: "metrics: failing …").
  for (const auto& series : {R"(sb_kafka_errors_total{op="produce"})", R"(sb_postgres_errors_total{kind="statement"})",
                             R"(sb_redis_errors_total{kind="connect"})"}) {
    INFO(series);
    CHECK(intake_metric(series) >= 0);
    CHECK(sbtest::metric(p.worker_ops, series) >= 0);
  }
  const auto intake = p.scrape(p.intake_port, "intake");
  // Route labels are templates: no message id (a raw path) among them.
  {
    std::ifstream in(intake);
    const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(body.find(sent) == std::string::npos);
  }
  const auto worker = p.scrape(p.worker_ops, "worker");
  const auto webhooks = p.scrape(p.webhooks_ops, "webhooks");
  const auto run = sbtest::run_python({"tests/contract/check_metric_queries.py", "--metrics", intake, worker, webhooks,
                                       "--dashboard", "compose/grafana/dashboards/switchboard.json",
                                       "--rules", "compose/prometheus/alerts.yml"},
                                      stack.log_dir + "/check_metric_queries.log");
  INFO(run.output);
  CHECK(run.exit_code == 0);
  // And the exposition itself follows Prometheus's conventions (Debian's promtool).
  for (const auto& scrape : {intake, worker, webhooks}) {
    INFO(scrape);
    CHECK(std::system(("promtool check metrics < '" + scrape + "' > '" + scrape + ".promtool' 2>&1").c_str()) == 0);
  }
}

TEST_CASE("contract: the Python example producer lands on intake's partition for each tenant and its command is sent",
          "[integration][contract][producer]") {
  TestStack stack("contract-producer", 6);
  Pipeline p(stack);
  std::vector<sbtest::TenantInfo> tenants;
  for (const char* name : {"acme", "globex", "initech", "umbrella", "hooli", "stark"}) tenants.push_back(stack.create_tenant(name, {"main"}));
  p.start();

  std::map<std::string, std::string> via_intake;  // message id → tenant id
  std::map<std::string, json> via_python;         // tenant id → what the producer printed
  for (const auto& t : tenants) {
    via_intake[p.send(t.api_key, R"({"to":"+15551234567","text":"from intake"})")] = t.id;
    const auto run = sbtest::run_python({"producers/examples/send_command.py", "--brokers", stack.config.kafka.brokers,
                                         "--topic-prefix", stack.config.kafka.topic_prefix, "--tenant", t.id,
                                         "--session", "main", "--to", "+15557654321", "--text", "from python"},
                                        stack.log_dir + "/producer-" + t.name + ".log");
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    via_python[t.id] = json::parse(run.output.substr(run.output.rfind("{\"id\"")));
  }

  sbtest::TopicReader lane(stack.config, stack.topic("sb.commands.default"));
  std::map<std::string, int> intake_partition;  // tenant id → partition of intake's record
  REQUIRE(lane.read_until([&](const auto& records) {
    for (const auto& r : records) {
      const auto cmd = json::parse(value_of(r), nullptr, false);
      if (auto it = via_intake.find(cmd.value("id", "")); it != via_intake.end()) intake_partition[it->second] = r->partition;
    }
    return intake_partition.size() == tenants.size();
  }, 30000));
  std::set<int> partitions;
  for (const auto& t : tenants) {
    INFO(t.name);
    CHECK(via_python[t.id]["partition"].get<int>() == intake_partition[t.id]);
    partitions.insert(intake_partition[t.id]);
    CHECK(p.final_status(t.api_key, via_python[t.id]["id"]) == "sent");
  }
  // The comparison means something only if the tenants did not all hash to one partition.
  CHECK(partitions.size() > 1);
}

TEST_CASE("contract: the live tests' required event types together cover every type of event.json", "[integration][contract][events]") {
  std::ifstream in(sbtest::repo_root() / "schemas/events/event.json");
  const auto schema = json::parse(in);
  std::set<std::string> covered;
  for (const std::string list : {sbtest::kPipelineEventTypes, sbtest::kSessionEventTypes}) {
    std::stringstream ss(list);
    for (std::string t; std::getline(ss, t, ',');) covered.insert(t);
  }
  for (const auto& t : schema["properties"]["type"]["enum"]) CHECK(covered.count(t.get<std::string>()) == 1);
}
