// Failing Kafka, PostgreSQL and Redis calls are counted where every process exports them:
// sb_kafka_errors_total{op}, sb_postgres_errors_total{kind}, sb_redis_errors_total{kind}. Each
// failure here is real — a refused connection, a statement the server rejects, a record the
// client refuses, an error reply from the server — and the counts are read from a live intake's
// /metrics, which renders this process's registry (the one those clients count in).
#include <catch2/catch.hpp>

#include <string>

#include "closed_port.hpp"
#include "intake_api.hpp"
#include "session_system.hpp"
#include "stack.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/redis.hpp"

TEST_CASE("metrics: failing Kafka, PostgreSQL and Redis calls count in their _errors_total series on /metrics",
          "[integration][metrics]") {
  sbtest::TestStack stack("error-metrics", 1);
  const sb::Config real = stack.config;  // the servers that answer
  stack.config.intake.listen = "127.0.0.1:0";
  // Quotas on, with Redis on a closed port: the quota check of an authenticated request cannot
  // connect (and lets the request through: quotas fail open).
  stack.config.quotas.requests_per_s = 1000;
  stack.config.redis.url = "redis://127.0.0.1:" + std::to_string(sbtest::closed_port());
  auto acme = stack.create_tenant("acme");
  sbtest::InProcessIntake intake(stack.config);
  const int port = intake.server.port();
  // Clients on the real servers (each family's series exist once a client of its kind does).
  sb::RedisClient redis(real.redis);
  sb::pg::Pool pool(real.postgres);
  auto value = [&](const std::string& series) {
    const double v = sbtest::metric(port, series);
    INFO(series);
    REQUIRE(v >= 0);  // the series exists before any failure (0, not absent)
    return v;
  };
  const std::string kafka_produce = R"(sb_kafka_errors_total{op="produce"})",
                    kafka_delivery = R"(sb_kafka_errors_total{op="delivery"})",
                    kafka_client = R"(sb_kafka_errors_total{op="client"})",
                    pg_connect = R"(sb_postgres_errors_total{kind="connect"})",
                    pg_statement = R"(sb_postgres_errors_total{kind="statement"})",
                    redis_connect = R"(sb_redis_errors_total{kind="connect"})",
                    redis_reply = R"(sb_redis_errors_total{kind="reply"})";
  const double produce0 = value(kafka_produce), delivery0 = value(kafka_delivery), client0 = value(kafka_client),
               pg_connect0 = value(pg_connect), pg_statement0 = value(pg_statement),
               redis_connect0 = value(redis_connect), redis_reply0 = value(redis_reply);

  // Redis: intake's quota check cannot connect; the request still passes.
  httplib::Client http("127.0.0.1", port);
  auto r = http.Get("/v1/sessions", sbtest::bearer(acme.api_key));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(value(redis_connect) == redis_connect0 + 1);
  // Redis answering an error: an unknown command.
  CHECK_THROWS_AS(redis.command({"SB_NO_SUCH_COMMAND"}), sb::Error);
  CHECK(value(redis_reply) == redis_reply0 + 1);

  // PostgreSQL refusing a statement, and a server that isn't there.
  CHECK_THROWS_AS(pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT * FROM sb_no_such_table");
  }), sb::Error);
  CHECK(value(pg_statement) == pg_statement0 + 1);
  auto nowhere = real.postgres;
  nowhere.url = "postgresql://127.0.0.1:" + std::to_string(sbtest::closed_port()) + "/switchboard?connect_timeout=2";
  sb::pg::Pool dead(nowhere);
  CHECK_THROWS_AS(dead.run([](pqxx::connection&) {}), sb::Unavailable);
  CHECK(value(pg_connect) == pg_connect0 + 1);

  // Kafka: a record over message.max.bytes is refused when queued, on the real broker's client.
  {
    sb::kafka::Producer producer(real.kafka);
    CHECK_THROWS(producer.produce(stack.topic("sb.events"), "k", std::string(2 * 1024 * 1024, 'x')).get());
  }
  CHECK(value(kafka_produce) == produce0 + 1);
  // A broker that isn't there: the client reports it (error callback) and the record's delivery
  // report fails once message.timeout.ms has passed.
  {
    auto nowhere_kafka = real.kafka;
    nowhere_kafka.brokers = "127.0.0.1:" + std::to_string(sbtest::closed_port());
    sb::kafka::Producer producer(nowhere_kafka, {{"message.timeout.ms", "300"}});
    CHECK_FALSE(producer.produce(stack.topic("sb.events"), "k", "v").get().ok());
  }
  CHECK(value(kafka_delivery) == delivery0 + 1);
  CHECK(sbtest::eventually([&] { return value(kafka_client) > client0; }, 5000));
}
