// The placer's node-health writes are fenced by its lease (real PostgreSQL): a replica that
// lost the lease between its probe and the write declares no node dead and marks no node
// drained; the holder's writes go through.
#include <catch2/catch.hpp>

#include "stack.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/workers/placement/placer.hpp"

using sbtest::TestStack;

namespace {

void set_placer_lease_row(sb::pg::Pool& pool, const std::string& holder, int64_t epoch, int ttl_ms) {
  pool.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params(R"SQL(
      INSERT INTO placer_lease (name, holder, epoch, expires_at) VALUES ('placer', $1, $2, now() + $3 * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at)SQL",
                   holder, epoch, ttl_ms);
  });
}

std::pair<std::string, std::string> node_health_and_drained(sb::pg::Pool& pool, const std::string& node) {
  return pool.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params1("SELECT health, coalesce(drained_at::text, '') FROM engine_nodes WHERE name = $1", node);
    return std::make_pair(r[0].as<std::string>(), r[1].as<std::string>());
  });
}

}  // namespace

TEST_CASE("nodes: a placer that lost its lease cannot write node health or drained — the holder can",
          "[integration][nodes][lease]") {
  TestStack stack("placer_lease");
  sb::pg::Pool pool(stack.config.postgres);
  sb::NodeRegistry nodes(pool, stack.config.engine, sb::SecretBox(stack.config.secrets.key));
  nodes.add({"n1", "http://127.0.0.1:9", "g", "", "hmac-n1", 10});
  nodes.set_draining("n1", true);
  auto fence_of = [](const std::string& holder, int64_t epoch) {
    return [holder, epoch](pqxx::work& tx) { sb::check_placer_lease(tx, holder, epoch); };
  };

  // "old" held epoch 1 and was paused; "new" took the lease (epoch 2). The old one wakes with
  // a probe round in hand: every write of it is refused and changes nothing.
  set_placer_lease_row(pool, "new", 2, 60000);
  CHECK_THROWS_AS(nodes.record_probe("n1", false, 1, fence_of("old", 1)), sb::LeaseLost);
  CHECK_THROWS_AS(nodes.record_probe("n1", false, 1, fence_of("new", 1)), sb::LeaseLost);  // a stale epoch of the same name
  CHECK_THROWS_AS(nodes.mark_drained("n1", fence_of("old", 1)), sb::LeaseLost);
  CHECK(node_health_and_drained(pool, "n1") == std::make_pair(std::string("unknown"), std::string()));

  // The holder's writes go through.
  CHECK(nodes.record_probe("n1", false, 1, fence_of("new", 2)) == "dead");
  nodes.mark_drained("n1", fence_of("new", 2));
  const auto [health, drained] = node_health_and_drained(pool, "n1");
  CHECK(health == "dead");
  CHECK_FALSE(drained.empty());

  // An expired lease fences its own holder too (it may be taken any moment).
  set_placer_lease_row(pool, "new", 2, -1000);
  CHECK_THROWS_AS(nodes.record_probe("n1", true, 1, fence_of("new", 2)), sb::LeaseLost);
  CHECK(node_health_and_drained(pool, "n1").first == "dead");
}
