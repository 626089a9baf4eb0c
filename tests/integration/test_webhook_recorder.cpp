// DeliveryRecorder on the real PostgreSQL: a row PostgreSQL refuses for good is isolated (the
// batch is split) and moved aside, and the rest of the batch is written and released — instead
// of the whole batch being retried forever while every later outcome waits behind it.
#include <catch2/catch.hpp>
#include <atomic>

#include "stack.hpp"
#include "switchboard/core/event_store.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/webhook_delivery_store.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/delivery_recorder.hpp"

namespace {

sb::Delivery live_delivery(const sb::WebhookEndpoint& e, const std::string& event_id) {
  return sb::Delivery{e, event_id, "message.sent", std::string("main"),
                      std::make_shared<const std::string>(R"({"id":")" + event_id + R"("})"), 1, 0};
}

sb::Decision outcome(const sb::Delivery& d, sb::Decision::Action action) {
  sb::Decision dec;
  dec.action = action;
  sb::AttemptRecord log;
  log.endpoint_id = d.endpoint.id;
  log.tenant_id = d.endpoint.tenant_id;
  log.event_id = d.event_id;
  log.event_type = d.event_type;
  log.outcome = action == sb::Decision::Action::Delivered ? "succeeded" : "failed";
  log.http_status = action == sb::Decision::Action::Delivered ? 200 : 500;
  // A receiver's NUL byte is not storable in PostgreSQL text: stripped, not a refused batch.
  log.response_excerpt = std::string("ok\0k", 4);
  dec.log = log;
  if (action == sb::Decision::Action::Retry) {
    dec.failed_attempts = 1;
    dec.due_in_s = 3600;
  }
  return dec;
}

sb::StoredEvent stored(const std::string& tenant, const std::string& id) {
  sb::StoredEvent e;
  e.id = id;
  e.tenant_id = tenant;
  e.type = "message.sent";
  e.session = "main";
  e.occurred_at = sb::now_rfc3339();
  e.body = R"({"id":")" + id + R"("})";
  return e;
}

sb::WebhookEndpoint recorder_endpoint(sb::pg::Pool& pool, const std::string& tenant_id) {
  sb::WebhookEndpoint e;
  e.tenant_id = tenant_id;
  e.url = "https://8.8.8.8/hook";
  e.events = {"*"};
  e.secret = sbtest::minted(sb::new_webhook_secret());
  return sb::WebhookStore(pool).create(e);
}

}  // namespace

TEST_CASE("webhook recorder: a refused row is split out and moved aside, the rest of its batch is durable",
          "[integration][webhooks][concurrency]") {
  sbtest::TestStack stack("webhook-recorder", 1);
  stack.config.webhooks.record_linger_ms = 200;  // one batch for everything submitted below
  auto tenant = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  const auto e = recorder_endpoint(pool, tenant.id);

  sb::kafka::Producer producer(stack.config.kafka);
  sb::kafka::ReliablePublisher publisher(producer);
  std::atomic<int> durable{0};
  auto count = [&] { ++durable; };
  const std::string delivered_id = sb::new_uuid_v7(), retried_id = sb::new_uuid_v7(), good_event = sb::new_uuid_v7();
  // A row claimed from the schedule whose delivery succeeded but whose log line is refused:
  // the row must still be completed (else it comes back after its lease and is sent again).
  sb::WebhookDeliveryStore schedule(pool);
  sb::ScheduledDelivery row;
  row.endpoint_id = e.id;
  row.tenant_id = e.tenant_id;
  row.event_id = sb::new_uuid_v7();
  row.event_type = "message.sent";
  row.body = "{}";
  REQUIRE(schedule.schedule({row}) == 1);
  auto claimed = schedule.claim_due(10, 60);
  REQUIRE(claimed.size() == 1);
  {
    sb::DeliveryRecorder recorder(stack.config, pool, producer, publisher, {});
    auto ok = live_delivery(e, delivered_id);
    recorder.submit(ok, outcome(ok, sb::Decision::Action::Delivered), count);
    auto bad = live_delivery(e, "not-a-uuid");  // PostgreSQL refuses its attempt-log row for good
    recorder.submit(bad, outcome(bad, sb::Decision::Action::Delivered), count);
    auto retry = live_delivery(e, retried_id);
    recorder.submit(retry, outcome(retry, sb::Decision::Action::Retry), count);
    auto again = live_delivery(e, claimed[0].event_id);
    again.scheduled_id = claimed[0].id;
    auto again_outcome = outcome(again, sb::Decision::Action::Delivered);
    again_outcome.log->event_id = "also-not-a-uuid";
    recorder.submit(again, again_outcome, count);
    recorder.record_event(stored(tenant.id, good_event), count);
    recorder.record_event(stored(tenant.id, "nope"), count);  // refused: moved aside
    // Every item is released (durable or moved aside); nothing waits behind the refused rows.
    REQUIRE(sbtest::eventually([&] { return durable.load() == 6; }, 20000));
    CHECK(recorder.stats().refused == 3);
    CHECK(recorder.stats().delivered == 3);
    CHECK(recorder.stats().failed == 1);
  }
  sb::WebhookDeliveryStore deliveries(pool);
  auto logged = deliveries.attempts(tenant.id, e.id, 10, std::nullopt);
  REQUIRE(logged.size() == 2);
  for (const auto& a : logged) {
    CHECK((a.event_id == delivered_id || a.event_id == retried_id));
    CHECK(a.response_excerpt == std::optional<std::string>("okk"));
  }
  CHECK(deliveries.pending_count() == 1);  // the failed one is parked for its retry; the claimed row is done
  CHECK(sb::EventStore(pool).get(tenant.id, good_event));
}

// A batch of first-try deliveries writes its attempts and events as one statement (no BEGIN and
// COMMIT around two inserts): both land, or, when PostgreSQL refuses a row of either, neither.
TEST_CASE("webhook deliveries: attempts and events of a batch are written by one statement, all or nothing",
          "[integration][webhooks][postgres]") {
  sbtest::TestStack stack("webhook-apply", 1);
  auto tenant = stack.create_tenant("acme");
  sb::pg::Pool pool(stack.config.postgres);
  const auto e = recorder_endpoint(pool, tenant.id);
  sb::WebhookDeliveryStore store(pool);
  sb::EventStore events(pool);

  const auto first = sb::new_uuid_v7(), second = sb::new_uuid_v7();
  sb::DeliveryChanges ok;
  for (const auto& id : {first, second}) {
    auto d = live_delivery(e, id);
    ok.attempts.push_back(*outcome(d, sb::Decision::Action::Delivered).log);
    ok.events.push_back(stored(tenant.id, id));
  }
  REQUIRE(ok.statements() == 2);
  store.apply(ok);
  CHECK(store.attempts(tenant.id, e.id, 10, std::nullopt).size() == 2);
  CHECK(events.get(tenant.id, first));
  CHECK(events.get(tenant.id, second));

  const auto kept_out = sb::new_uuid_v7();
  sb::DeliveryChanges refused;
  auto d = live_delivery(e, kept_out);
  refused.attempts.push_back(*outcome(d, sb::Decision::Action::Delivered).log);
  refused.events.push_back(stored(tenant.id, "not-a-uuid"));  // PostgreSQL refuses this row
  CHECK_THROWS(store.apply(refused));
  CHECK(store.attempts(tenant.id, e.id, 10, std::nullopt).size() == 2);  // its attempt was not written either
}
