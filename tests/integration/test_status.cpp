// `switchboard status` against the real broker: brokers, Switchboard's topics, each consumer
// group's members, assignments and lag, and the dead-letter depth; `--json` for scripts.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "stack.hpp"
#include "switchboard/core/cluster_status.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/kafka.hpp"

using nlohmann::json;

namespace {

const sb::GroupStatus& group(const sb::ClusterStatus& s, const std::string& name) {
  for (const auto& g : s.groups)
    if (g.name == name) return g;
  FAIL("no group " << name << " in the status");
  throw;  // not reached
}

std::string command_json(const std::string& tenant) {
  return json({{"id", sb::new_uuid_v7()}, {"type", "message.send"}, {"tenant", tenant}, {"session", "main"},
               {"created_at", sb::now_rfc3339()}, {"data", {{"to", "+15551234567"}, {"text", "hi"}}}})
      .dump();
}

}  // namespace

TEST_CASE("status: groups with members, assignments and lag, and dead-letter depth, as text and --json",
          "[integration][status]") {
  sbtest::TestStack stack("status", 3);
  auto acme = stack.create_tenant("acme");
  sb::kafka::Producer producer(stack.config.kafka);
  // 4 commands on the high lane, which has no worker: all of them are lag. 2 records on sb.dlq.
  for (int i = 0; i < 4; ++i)
    REQUIRE(producer.produce(stack.topic("sb.commands.high"), acme.id, command_json(acme.id)).get().ok());
  for (int i = 0; i < 2; ++i) REQUIRE(producer.produce(stack.topic("sb.dlq"), acme.id, "{}").get().ok());

  // The default lane has a worker: once it has finished its 3 commands (failed: the provider's
  // port is closed) and committed, that group's lag is 0.
  for (int i = 0; i < 3; ++i)
    REQUIRE(producer.produce(stack.topic("sb.commands.default"), acme.id, command_json(acme.id)).get().ok());
  stack.config.provider.url = "http://127.0.0.1:" + std::to_string(sbtest::free_port());
  stack.config.worker.provider_backoff_ms = 10;
  stack.config.worker.commit_interval_ms = 200;
  stack.write_config();
  auto worker = stack.spawn("worker-default", {"worker", "--lane", "default"});
  sb::ClusterStatus s;
  REQUIRE(sbtest::eventually([&] {
    s = sb::read_cluster_status(stack.config);
    const auto& g = group(s, stack.topic("sb-workers-default"));
    return g.state == "Stable" && g.members.size() == 1 && g.members[0].partitions.size() == 3 &&
           g.partitions.size() == 3 && g.lag() == 0;
  }, 30000, 200));

  CHECK_FALSE(s.brokers.empty());
  for (const auto& t : s.topics) {
    INFO(t.name << " " << t.error);
    CHECK(t.error.empty());
    CHECK(t.partitions.size() == 3);
  }
  const auto& high = group(s, stack.topic("sb-workers-high"));
  CHECK(high.members.empty());
  CHECK(high.lag() == 4);
  CHECK(high.topic == stack.topic("sb.commands.high"));
  int64_t committed = 0;
  for (const auto& p : group(s, stack.topic("sb-workers-default")).partitions) committed += std::max<int64_t>(p.committed, 0);
  CHECK(committed == 3);  // lag 0 because all 3 were committed, not because nothing was there
  CHECK(s.dlq_depth == 2);
  CHECK(s.webhooks_dlq_depth == 0);
  // Sessions by status and node, from PostgreSQL: acme's one simulator session is WORKING, no node.
  INFO(s.sessions_error);
  REQUIRE(s.sessions.size() == 1);
  CHECK(s.sessions[0].status == "WORKING");
  CHECK(s.sessions[0].node.empty());
  CHECK(s.sessions[0].count == 1);

  // The command line: the same facts, as JSON on stdout (logs go to stderr).
  const auto out = stack.log_dir + "/status.json";
  const std::string cmd = sbtest::require_env("SWITCHBOARD_BIN") + " --config '" + stack.config_path + "' status --json > '" +
                          out + "' 2> '" + stack.log_dir + "/status.log'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto doc = json::parse(ss.str());
  CHECK(doc["dlq"]["sb.dlq"] == 2);
  bool found = false;
  for (const auto& g : doc["groups"])
    if (g["group"] == stack.topic("sb-workers-high")) {
      found = true;
      CHECK(g["lag"] == 4);
      CHECK(g["partitions"].size() == 3);
    }
  CHECK(found);
  CHECK(doc["topics"].size() == 6);
  REQUIRE(doc["sessions"].size() == 1);
  CHECK(doc["sessions"][0]["status"] == "WORKING");
  CHECK(doc["sessions"][0]["count"] == 1);

  const auto text = sb::to_text(s);
  CHECK_THAT(text, Catch::Contains("consumer groups") && Catch::Contains(stack.topic("sb-workers-default")) &&
                       Catch::Contains("sb.dlq 2") && Catch::Contains("sessions by status and node") &&
                       Catch::Contains("WORKING  -  1"));
}
