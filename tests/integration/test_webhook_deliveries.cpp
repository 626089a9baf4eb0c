// The durable retry schedule and attempt log on the real PostgreSQL: idempotent scheduling,
// exclusive claims under concurrency, leases that return a dead claimer's rows, the log's order.
#include <catch2/catch.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_store.hpp"

namespace {
sb::WebhookEndpoint endpoint_for(const sbtest::TenantInfo& t) {
  sb::WebhookEndpoint e;
  e.tenant_id = t.id;
  e.url = "https://8.8.8.8/hook";
  e.events = {"*"};
  e.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  return e;
}
sb::ScheduledDelivery delivery(const sb::WebhookEndpoint& e, const std::string& event_id, int due_in_s) {
  sb::ScheduledDelivery d;
  d.endpoint_id = e.id;
  d.tenant_id = e.tenant_id;
  d.event_id = event_id;
  d.event_type = "message.sent";
  d.session = "main";
  d.body = R"({"id":")" + event_id + R"("})";
  d.due_in_s = due_in_s;
  return d;
}
}  // namespace

TEST_CASE("webhook deliveries: schedule once, claim exclusively, lease expiry, reschedule", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-deliveries");
  auto tenant = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  sb::WebhookStore endpoints(pool);
  sb::WebhookDeliveryStore store(pool);
  auto ep = endpoints.create(endpoint_for(tenant));

  std::vector<sb::ScheduledDelivery> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(delivery(ep, sb::new_uuid_v7(), 0));
  batch.push_back(delivery(ep, sb::new_uuid_v7(), 3600));  // not due for an hour
  store.schedule(batch);
  store.schedule({batch[0]});  // a replayed event is not parked twice

  // Two replicas claiming at once never get the same row, and together get every due one.
  std::mutex mu;
  std::multiset<int64_t> claimed;
  std::vector<std::thread> claimers;
  for (int t = 0; t < 4; ++t)
    claimers.emplace_back([&] {
      for (;;) {
        auto got = store.claim_due(7, 60);
        if (got.empty()) return;
        std::lock_guard lock(mu);
        for (const auto& d : got) claimed.insert(d.id);
      }
    });
  for (auto& t : claimers) t.join();
  CHECK(claimed.size() == 200);
  CHECK(std::set<int64_t>(claimed.begin(), claimed.end()).size() == 200);
  CHECK(store.claim_due(10, 60).empty());  // all leased; the hour-later one isn't due

  // Reschedule one for now, complete another: only the rescheduled one comes back.
  const auto first = *claimed.begin();
  const auto second = *std::next(claimed.begin());
  sb::DeliveryChanges changes;
  changes.reschedule.push_back({first, 3, 0});
  changes.complete.push_back(second);
  store.apply(changes);
  auto again = store.claim_due(10, 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == first);
  CHECK(again[0].attempts == 3);
  CHECK(again[0].session == std::optional<std::string>("main"));
  // Its claimer "dies": after the 1 s lease it is claimable again.
  CHECK(sbtest::eventually([&] {
    auto r = store.claim_due(10, 60);
    return r.size() == 1 && r[0].id == first;
  }, 5000, 200));
}

TEST_CASE("webhook attempts: logged in batches, listed newest first, filtered, per tenant", "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-attempts");
  auto acme = stack.create_tenant("acme");
  auto globex = stack.create_tenant("globex");
  sb::pg::Pool pool(stack.config.postgres);
  sb::WebhookStore endpoints(pool);
  sb::WebhookDeliveryStore store(pool);
  auto ep = endpoints.create(endpoint_for(acme));
  const auto event = sb::new_uuid_v7();
  std::vector<sb::AttemptRecord> log;
  for (int i = 1; i <= 4; ++i) {
    sb::AttemptRecord a{ep.id, acme.id, event, "message.sent", i, i < 4 ? "failed" : "succeeded", i < 4 ? 500 : 200,
                        std::nullopt, std::string(3000, 'x'), 12, {}};
    if (i < 4) a.error = "HTTP 500";
    log.push_back(a);
    store.record_attempts({a});
  }
  auto all = store.attempts(acme.id, ep.id, 10, std::nullopt);
  REQUIRE(all.size() == 4);
  CHECK(all[0].attempt == 4);
  CHECK(all[0].outcome == "succeeded");
  CHECK(all[0].response_excerpt->size() == 2048);  // first 2 KiB only
  CHECK(all[3].error == std::optional<std::string>("HTTP 500"));
  CHECK(store.attempts(acme.id, ep.id, 10, std::string("failed")).size() == 3);
  CHECK(store.attempts(acme.id, ep.id, 2, std::nullopt).size() == 2);
  CHECK(store.attempts(globex.id, ep.id, 10, std::nullopt).empty());
}

TEST_CASE("webhook deliveries: ordered rows are claimed one per (endpoint, session), old attempts are purged",
          "[integration][webhooks]") {
  sbtest::TestStack stack("webhook-ordered");
  auto tenant = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  auto e = sb::WebhookStore(pool).create(endpoint_for(tenant));
  sb::WebhookDeliveryStore store(pool);

  std::vector<sb::ScheduledDelivery> rows;
  for (const char* session : {"a", "a", "a", "b"}) {
    auto d = delivery(e, sb::new_uuid_v7(), 0);
    d.session = session;
    d.ordered = true;
    rows.push_back(d);
  }
  REQUIRE(store.schedule(rows) == 4);
  CHECK(store.schedule(rows) == 0);  // already pending: not twice
  CHECK(store.has_pending(e.id, std::string("a")));
  CHECK_FALSE(store.has_pending(e.id, std::string("c")));

  auto first = store.claim_due(10, 60);
  REQUIRE(first.size() == 2);  // the head of a, and b
  std::set<std::string> events;
  for (const auto& d : first) events.insert(d.event_id);
  CHECK(events == std::set<std::string>{rows[0].event_id, rows[3].event_id});
  CHECK(store.claim_due(10, 60).empty());  // a's next waits for its head
  sb::DeliveryChanges done;
  for (const auto& d : first)
    if (d.event_id == rows[0].event_id) done.complete.push_back(d.id);
  store.apply(done);
  auto second = store.claim_due(10, 60);
  REQUIRE(second.size() == 1);
  CHECK(second[0].event_id == rows[1].event_id);  // in order

  sb::AttemptRecord a;
  a.endpoint_id = e.id;
  a.tenant_id = e.tenant_id;
  a.event_id = rows[0].event_id;
  a.event_type = "message.sent";
  a.outcome = "succeeded";
  store.record_attempts({a, a, a});
  pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("UPDATE webhook_attempts SET at = now() - interval '40 days' WHERE id IN (SELECT id FROM webhook_attempts LIMIT 2)");
    tx.commit();
  });
  CHECK(store.purge_attempts_older_than(30, 1) == 1);
  CHECK(store.purge_attempts_older_than(30, 10) == 1);
  CHECK(store.attempts(e.tenant_id, e.id, 10, std::nullopt).size() == 1);
}
