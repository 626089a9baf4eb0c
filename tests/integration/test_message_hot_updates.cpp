// A message's sending mark is a HOT update in PostgreSQL (no new index entries), which migration
// 013 made possible: no index predicate names `status` any more, and messages' pages keep room
// for updated versions (fillfactor 80). Before it, 0 of 108,245 updates of messages were HOT in a
// chaos run. The counts come from the server's own pg_stat_user_tables.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/pg.hpp"

namespace {
struct UpdateCounts {
  long long updates = 0, hot = 0;
};

UpdateCounts message_updates(const std::string& url) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  auto r = tx.exec("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'messages'");
  return {r[0][0].as<long long>(), r[0][1].as<long long>()};
}
}  // namespace

TEST_CASE("postgres: claiming queued messages (the sending mark) updates them as HOT, without new index entries",
          "[integration][postgres]") {
  sbtest::TestStack stack("message-hot", 1);
  auto acme = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  sb::MessageStore store(pool);
  const UpdateCounts before = message_updates(stack.config.postgres.url);
  constexpr int kBatches = 10, kBatch = 30;
  for (int b = 0; b < kBatches; ++b) {
    std::vector<sb::NewMessage> rows;
    std::vector<sb::SendCommand> commands;
    for (int i = 0; i < kBatch; ++i) {
      const std::string id = sb::new_uuid_v7();
      rows.push_back({id, acme.id, "main", "+15550001111", "hello " + std::to_string(i), "default", std::nullopt});
      commands.push_back({id, acme.id, "main", "default", sb::now_rfc3339(), "+15550001111", "hello " + std::to_string(i)});
    }
    for (const auto& o : store.insert_queued(rows)) REQUIRE(o.created);
    for (const auto& claim : store.claim_for_send(commands)) REQUIRE(claim.status == sb::SendClaim::Status::Fresh);
  }
  // The server's statistics arrive asynchronously: wait until every claim is counted.
  UpdateCounts after;
  REQUIRE(sbtest::eventually([&] {
    after = message_updates(stack.config.postgres.url);
    return after.updates - before.updates >= kBatches * kBatch;
  }, 15000, 100));
  const long long updates = after.updates - before.updates, hot = after.hot - before.hot;
  std::printf("messages: %lld updates, %lld HOT\n", updates, hot);
  // Not every one can be HOT (a page full of fresh rows has room for only some new versions),
  // but with the scheduler's index on `status` none could.
  CHECK(hot * 4 >= updates);
}
