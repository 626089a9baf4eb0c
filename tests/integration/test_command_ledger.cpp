// The PostgreSQL command ledger against a real server: what recording an outcome answers when the
// message has ended already. Found by the chaos harness (seed 3569250427): a SIGSTOPped worker
// woke after its partition's next owner had reconciled a message as sent, and its late
// failed/uncertain, refused by the upsert, still went out as a second terminal event.
#include <catch2/catch.hpp>

#include <future>
#include <string>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/workers/pg_command_ledger.hpp"

namespace {
sb::CommandLedger::RecordResult record_now(sb::PgCommandLedger& ledger, const sb::MessageOutcome& o) {
  std::promise<sb::CommandLedger::RecordResult> done;
  auto answer = done.get_future();
  ledger.record(o, [&done](sb::CommandLedger::RecordResult r, std::exception_ptr err) {
    if (err) done.set_exception(err);
    else done.set_value(r);
  });
  REQUIRE(answer.wait_for(std::chrono::seconds(15)) == std::future_status::ready);
  return answer.get();
}
}  // namespace

TEST_CASE("postgres ledger: an outcome for a message another owner concluded differently is superseded, the same one is not",
          "[integration][postgres]") {
  sbtest::TestStack stack("command-ledger", 1);
  auto acme = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  sb::MessageStore store(pool);
  sb::PgCommandLedger ledger(store, {});
  const std::string id = sb::new_uuid_v7();
  REQUIRE(store.insert_queued({{id, acme.id, "main", "+15550001111", "hello", "default", std::nullopt}})[0].created);
  REQUIRE(store.claim_for_send({{id, acme.id, "main", "default", sb::now_rfc3339(), "+15550001111", "hello"}})[0].status ==
          sb::SendClaim::Status::Fresh);

  sb::MessageOutcome sent{id, acme.id, "main", "+15550001111", "hello", "default", "sent", "wamid.first", std::nullopt,
                          sb::now_rfc3339(), std::nullopt};
  CHECK_FALSE(record_now(ledger, sent).superseded);  // the next owner's reconciled outcome

  auto late = sent;  // the zombie's call, ended after the partition moved
  late.status = "failed";
  late.provider_message_id.reset();
  late.error = "uncertain: the provider may or may not have sent it (timeout)";
  late.reason = "uncertain";
  const auto r = record_now(ledger, late);
  CHECK(r.superseded);
  CHECK(r.stored_status == "sent");

  // The same outcome again (a write retried after an outage hid that it had committed) is ours.
  CHECK_FALSE(record_now(ledger, sent).superseded);

  const auto view = store.get(acme.id, id);
  REQUIRE(view);
  CHECK(view->status == "sent");
  CHECK(view->provider_message_id == std::optional<std::string>("wamid.first"));
  for (const auto& change : view->history) CHECK(change.status != "failed");  // the refused one left no history
  CHECK(ledger.counters().superseded == 1);
}

// Found by the chaos harness (seed 1965780114, invariant 4): a send's first publish was refused
// by Kafka (`persisted: no`), a retry with the same Idempotency-Key found the row and republished
// its id, then the first request's discard deleted the row; a later retry inserted the key again
// under a new id, and the provider received both.
TEST_CASE("postgres: a queued message a retry with its Idempotency-Key found is not discarded by the refused first request",
          "[integration][postgres][idempotency]") {
  sbtest::TestStack stack("discard-race", 1);
  auto acme = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  sb::MessageStore store(pool);
  auto send = [&](const std::string& key) {
    return sb::NewMessage{sb::new_uuid_v7(), acme.id, "main", "+15550001111", "hello", "default", key};
  };
  const auto first = send("order-1");
  REQUIRE(store.insert_queued({first})[0].created);
  const auto retry = store.insert_queued({send("order-1")})[0];
  CHECK_FALSE(retry.created);
  CHECK(retry.id == first.id);          // the retry republishes the first request's id …
  store.discard(first.id);              // … so the first request's discard leaves the row
  REQUIRE(store.get(acme.id, first.id));
  const auto later = store.insert_queued({send("order-1")})[0];
  CHECK(later.id == first.id);          // one id for the key, whatever happened in between

  // Without a retry in between, the discard frees the key as before.
  const auto alone = send("order-2");
  REQUIRE(store.insert_queued({alone})[0].created);
  store.discard(alone.id);
  CHECK_FALSE(store.get(acme.id, alone.id));
  const auto again = send("order-2");
  const auto fresh = store.insert_queued({again})[0];
  CHECK(fresh.created);
  CHECK(fresh.id == again.id);
}
