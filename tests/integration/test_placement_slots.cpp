// Capacity slots against real PostgreSQL, through the code paths intake (create), the lane
// workers (stop, start, delete) and the placer (moves) use, many at once: concurrent creates fill
// a group's nodes exactly to capacity, and after concurrent moves, stops, starts and deletes the
// slot count placement reads (engine_nodes.placed, kept by migration 012's triggers) still equals
// count(*) of the sessions holding a slot on each node — it never drifts.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/session_store.hpp"

using sbtest::TestStack;

namespace {

// What POST /v1/sessions does for an engine session created to start (session_api.cpp): the
// node chosen in the creating transaction. false: no node of the group has room.
bool slots_create(sb::SessionStore& store, const std::string& tenant, const std::string& name, const std::string& group) {
  sb::NewSession s;
  s.tenant_id = tenant;
  s.name = name;
  s.provider = "engine";
  s.engine_name = sb::engine_session_name(tenant, name);
  try {
    store.create(s, [group](pqxx::work& tx, sb::NewSession& n) {
      auto p = sb::SessionPlacement::choose(tx, group, std::nullopt);
      n.node = p.node;
      n.generation = p.generation;
      n.storage_group = p.storage_group;
    });
    return true;
  } catch (const sb::NoCapacity&) {
    return false;
  }
}

void slots_status(sb::SessionStore& store, const std::string& tenant, const std::string& name, const std::string& status) {
  store.set_status(tenant, name, {status, std::nullopt, std::string("test"), sb::now_rfc3339()});
}

// What a start does (session_lifecycle.cpp): a slot on its node, else re-placed in its group
// with one, else FAILED no_capacity; then the engine's STARTING is recorded.
std::string slots_start(sb::SessionStore& store, sb::SessionPlacement& placement, const std::string& tenant, const std::string& name) {
  auto s = store.get(tenant, name);
  if (!s) return "gone";
  const auto slot = placement.take_slot(tenant, name, s->generation);
  if (slot == sb::SessionPlacement::Slot::Stale) return "stale";
  if (slot == sb::SessionPlacement::Slot::Full) {
    try {
      if (!placement.move(tenant, name, s->generation, "start requested; node full", false, {}, {}, true)) return "stale";
    } catch (const sb::NoCapacity&) {
      slots_status(store, tenant, name, "FAILED");
      return "no_capacity";
    }
  }
  slots_status(store, tenant, name, "STARTING");
  return "started";
}

struct SlotRow {
  int placed = 0, capacity = 0, holding = 0, running = 0;
};

std::map<std::string, SlotRow> slot_rows(sb::pg::Pool& pool) {
  return pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::map<std::string, SlotRow> out;
    for (const auto& r : tx.exec(R"SQL(
        SELECT n.name, n.placed, n.capacity,
               (SELECT count(*) FROM sessions s WHERE s.node = n.name AND s.holds_slot)::int,
               (SELECT count(*) FROM sessions s WHERE s.node = n.name AND s.status NOT IN ('STOPPED', 'FAILED'))::int
        FROM engine_nodes n)SQL"))
      out[r[0].as<std::string>()] = {r[1].as<int>(), r[2].as<int>(), r[3].as<int>(), r[4].as<int>()};
    return out;
  });
}

// The invariant: the counter is count(*), and no node holds more than its capacity.
void check_slots(sb::pg::Pool& pool, bool settled) {
  for (const auto& [node, r] : slot_rows(pool)) {
    INFO("node " << node << ": placed " << r.placed << ", capacity " << r.capacity << ", holding " << r.holding << ", running "
                 << r.running);
    CHECK(r.placed == r.holding);
    CHECK(r.holding <= r.capacity);
    if (settled) CHECK(r.running == r.holding);  // nothing between a slot taken and its start recorded
  }
}

std::vector<std::string> slots_sessions_on(sb::pg::Pool& pool, const std::string& node, const std::string& status) {
  return pool.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<std::string> out;
    for (const auto& r : tx.exec_params("SELECT name FROM sessions WHERE node = $1 AND status = $2 ORDER BY name", node, status))
      out.push_back(r[0].as<std::string>());
    return out;
  });
}

}  // namespace

TEST_CASE("nodes: the slot count placement reads never drifts — concurrent creates fill nodes exactly to capacity, and "
          "after concurrent moves, stops, starts and deletes engine_nodes.placed equals count(*)",
          "[integration][nodes][slots]") {
  TestStack stack("placement_slots");
  sb::pg::Pool pool(stack.config.postgres);
  sb::NodeRegistry nodes(pool, stack.config.engine, sb::SecretBox(stack.config.secrets.key));
  nodes.add({"g1", "http://127.0.0.1:9", "g", "", "hmac-g1", 5});
  nodes.add({"g2", "http://127.0.0.1:9", "g", "", "hmac-g2", 7});
  nodes.add({"g3", "http://127.0.0.1:9", "g", "", "hmac-g3", 9});
  nodes.add({"h1", "http://127.0.0.1:9", "h", "", "hmac-h1", 4});
  const auto tenant = stack.create_tenant("acme", {}).id;
  sb::SessionStore store(pool);
  sb::SessionPlacement placement(pool);

  // 1. 10 connections create at once, 108 sessions for 25 slots: exactly the capacities.
  std::atomic<int> made_g{0}, made_h{0};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 12; ++i) made_g += slots_create(store, tenant, "g-" + std::to_string(t) + "-" + std::to_string(i), "g");
      });
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 6; ++i) made_h += slots_create(store, tenant, "h-" + std::to_string(t) + "-" + std::to_string(i), "h");
      });
    for (auto& th : threads) th.join();
  }
  CHECK(made_g == 5 + 7 + 9);
  CHECK(made_h == 4);
  for (const auto& [node, r] : slot_rows(pool)) {
    INFO(node);
    CHECK(r.placed == r.capacity);
  }
  check_slots(pool, false);  // created, their starts not recorded yet: STOPPED, each holding its slot

  // 2. All at once: g1's sessions stop and start again, g2 loses four to deletes, g3 drains
  //    (its sessions moved, as the placer does), and more creates try to take what frees up.
  for (const auto& n : {"g1", "g2", "g3", "h1"})  // started: WORKING, the slot they hold unchanged
    for (const auto& name : slots_sessions_on(pool, n, "STOPPED")) slots_status(store, tenant, name, "WORKING");
  check_slots(pool, true);
  nodes.set_draining("g3", true);
  const auto on_g1 = slots_sessions_on(pool, "g1", "WORKING"), on_g2 = slots_sessions_on(pool, "g2", "WORKING"),
             on_g3 = slots_sessions_on(pool, "g3", "WORKING");
  REQUIRE(on_g1.size() == 5);
  REQUIRE(on_g2.size() == 7);
  REQUIRE(on_g3.size() == 9);
  std::mutex outcomes_mu;
  std::map<std::string, int> outcomes;
  auto count = [&](const std::string& what) {
    std::lock_guard lock(outcomes_mu);
    ++outcomes[what];
  };
  {
    std::vector<std::thread> threads;
    threads.emplace_back([&] {  // stop and start each of g1's
      for (const auto& name : on_g1) {
        slots_status(store, tenant, name, "STOPPED");
        count(slots_start(store, placement, tenant, name));
      }
    });
    threads.emplace_back([&] {
      for (std::size_t i = 0; i < 4; ++i) store.remove(tenant, on_g2[i]);
    });
    threads.emplace_back([&] {  // the drain
      for (const auto& name : on_g3) {
        auto s = store.get(tenant, name);
        try {
          count(placement.move(tenant, name, s->generation, "draining", true) ? "moved" : "stale");
        } catch (const sb::NoCapacity&) {
          count("drain_full");
        }
      }
    });
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 8; ++i) count(slots_create(store, tenant, "late-" + std::to_string(t) + "-" + std::to_string(i), "g") ? "created" : "refused");
      });
    for (auto& th : threads) th.join();
  }
  std::string seen;
  for (const auto& [k, v] : outcomes) seen += k + "=" + std::to_string(v) + " ";
  INFO("outcomes: " << seen);
  check_slots(pool, false);  // moved sessions are STARTING, created ones STOPPED holding their slot: both hold one

  // 3. Settled, the free slots are exactly what creates can still take: no more, no fewer.
  auto rows = slot_rows(pool);
  const int free_g = (rows["g1"].capacity - rows["g1"].placed) + (rows["g2"].capacity - rows["g2"].placed);  // g3 drains
  int refilled = 0;
  for (int i = 0; i < free_g + 3; ++i) refilled += slots_create(store, tenant, "refill-" + std::to_string(i), "g");
  CHECK(refilled == free_g);
  rows = slot_rows(pool);
  CHECK(rows["g1"].placed == rows["g1"].capacity);
  CHECK(rows["g2"].placed == rows["g2"].capacity);
  check_slots(pool, false);

  // 4. Deleting everything gives every slot back; an emptied node can be removed.
  pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("DELETE FROM sessions");
    tx.commit();
  });
  for (const auto& [node, r] : slot_rows(pool)) {
    INFO(node);
    CHECK(r.placed == 0);
  }
  nodes.remove("h1");
  CHECK_FALSE(nodes.get("h1"));
}
