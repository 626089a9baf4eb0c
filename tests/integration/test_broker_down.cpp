// Kafka outage at intake: librdkafka's mock cluster takes the broker down (fault injection a real
// broker can't do inside a test); PostgreSQL is the real server.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <catch2/catch.hpp>
#include <thread>

#include "mock_kafka.hpp"
#include "stack.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/producers/intake_server.hpp"

using nlohmann::json;

namespace {
// An in-process intake whose Kafka is librdkafka's mock cluster (owned by a throw-away client
// handle), so a test can take the broker down or slow it; PostgreSQL is the real server.
struct MockKafkaIntake {
  sbtest::MockCluster cluster{"sb.commands.default", 4};
  rd_kafka_mock_cluster_t* mock = cluster.mock;
  sb::Config config;
  std::unique_ptr<sb::IntakeServer> intake;
  std::thread serving;

  MockKafkaIntake(const sb::Config& base, int publish_timeout_ms) : config(base) {
    config.kafka.brokers = cluster.bootstraps();
    config.kafka.topic_prefix = "";
    config.kafka.librdkafka.clear();
    config.intake.listen = "127.0.0.1:0";
    config.intake.publish_timeout_ms = publish_timeout_ms;
    intake = std::make_unique<sb::IntakeServer>(config);
    serving = std::thread([this] { intake->run(); });
    REQUIRE(intake->wait_until_ready(10000));
  }
  ~MockKafkaIntake() {
    intake->stop();
    if (serving.joinable()) serving.join();
  }
  int port() const { return intake->port(); }
};
}  // namespace

TEST_CASE("intake: 503 with Retry-After (never 202) while the broker is down", "[integration][intake][faults]") {
  sbtest::TestStack stack("broker-down");
  auto tenant = stack.create_tenant("acme");

  MockKafkaIntake mk(stack.config, 1500);
  auto* mock = mk.mock;
  const auto& config = mk.config;
  httplib::Client http("127.0.0.1", mk.port());
  http.set_read_timeout(20, 0);
  const std::string body = R"({"to":"+15551234567","text":"hi"})";
  auto send = [&] { return http.Post("/v1/sessions/main/messages", sbtest::bearer(tenant.api_key), body, "application/json"); };

  auto up = send();
  REQUIRE(up);
  CHECK(up->status == 202);

  rd_kafka_mock_broker_set_down(mock, 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto down = send();
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(down);
  CHECK(down->status == 503);
  CHECK(down->get_header_value("Retry-After") == std::to_string(config.intake.retry_after_s));
  CHECK_THAT(json::parse(down->body)["error"].get<std::string>(), Catch::Contains("retry"));
  CHECK(waited < config.intake.publish_timeout_ms + 3000);  // bounded by the configured deadline
  auto ready = http.Get("/health/ready");
  REQUIRE(ready);
  CHECK(ready->status == 503);

  rd_kafka_mock_broker_set_up(mock, 1);
  CHECK(sbtest::eventually([&] { auto r = send(); return r && r->status == 202; }, 20000, 200));

}

// C11: a record that times out *in flight* may have been written by the broker (librdkafka:
// RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED). Intake must not delete its row and forget it: it
// keeps the row queued, answers 503 naming the id, and the client's retry with the same
// Idempotency-Key republishes that same message (the worker dedupes by id).
TEST_CASE("intake: a possibly persisted publish keeps its message and the idempotent retry republishes it",
          "[integration][intake][faults]") {
  sbtest::TestStack stack("possibly-persisted");
  auto tenant = stack.create_tenant("acme");

  MockKafkaIntake mk(stack.config, 1000);
  auto* mock = mk.mock;
  const auto& config = mk.config;
  httplib::Client http("127.0.0.1", mk.port());
  http.set_read_timeout(20, 0);
  const std::string body = R"({"to":"+15551234567","text":"hi"})";
  httplib::Headers headers = sbtest::bearer(tenant.api_key);
  headers.emplace("Idempotency-Key", "order-42");

  auto warm = http.Post("/v1/sessions/main/messages", sbtest::bearer(tenant.api_key), body, "application/json");
  REQUIRE(warm);
  REQUIRE(warm->status == 202);  // connections and metadata are up: the next produce goes straight out

  // The broker answers 3 s late: the produce request is sent, then times out waiting.
  REQUIRE(rd_kafka_mock_broker_set_rtt(mock, 1, 3000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  auto slow = http.Post("/v1/sessions/main/messages", headers, body, "application/json");
  REQUIRE(slow);
  CHECK(slow->status == 503);
  CHECK(slow->get_header_value("Retry-After") == std::to_string(config.intake.retry_after_s));

  // The row was not discarded: the message is still recorded, and still queued.
  sb::pg::Pool pool(config.postgres);
  const auto rows = pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec("SELECT id::text, status FROM messages WHERE idempotency_key = 'order-42'");
  });
  REQUIRE(rows.size() == 1);
  const std::string id = rows[0][0].as<std::string>();
  CHECK(rows[0][1].as<std::string>() == "queued");
  // The answer says what happened and names the message.
  const auto answer = json::parse(slow->body);
  CHECK_THAT(answer["error"].get<std::string>(), Catch::Contains("Idempotency-Key"));
  CHECK(answer.value("id", "") == id);

  // The client retries with the same key once the broker is fast again: the same message.
  REQUIRE(rd_kafka_mock_broker_set_rtt(mock, 1, 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
  std::string retried_id;
  CHECK(sbtest::eventually([&] {
    auto r = http.Post("/v1/sessions/main/messages", headers, body, "application/json");
    if (!r || r->status != 202) return false;
    retried_id = json::parse(r->body)["id"];
    return r->get_header_value("Idempotent-Replayed") == "true";
  }, 20000, 200));
  CHECK(retried_id == id);

}
