// ReliablePublisher against librdkafka's mock cluster (fault injection only): a passing outage
// is retried until acked, a permanent refusal is reported once (review C9: it looped forever).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "../support/mock_kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"

using namespace std::chrono_literals;

namespace {
// The publisher's topic on a one-broker mock cluster.
struct MockCluster : sbtest::MockCluster {
  MockCluster() : sbtest::MockCluster("events", 2) {}
  sb::KafkaConfig config() const {
    sb::KafkaConfig c;
    c.brokers = bootstraps();
    return c;
  }
};

struct Outcomes {
  std::mutex mu;
  std::condition_variable cv;
  int acked = 0, failed = 0;
  std::string error;
  template <typename P>
  bool wait(P pred, std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, d, [&] { return pred(*this); });
  }
};
}  // namespace

TEST_CASE("reliable publisher: records produced during a broker outage are acked after it", "[unit][kafka]") {
  MockCluster cluster;
  // Short delivery deadline: during the outage records time out and come back to the publisher.
  sb::kafka::Producer producer(cluster.config(), {{"message.timeout.ms", "300"}});
  Outcomes out;
  {
    sb::kafka::ReliablePublisher publisher(producer, sb::RetryPolicy({50ms, 200ms, 2.0, 0.0, 0}));
    rd_kafka_mock_broker_set_down(cluster.mock, 1);
    for (int i = 0; i < 20; ++i)
      publisher.publish("events", "tenant-" + std::to_string(i), "{}", {}, [&] {
        std::lock_guard l(out.mu);
        ++out.acked;
        out.cv.notify_all();
      }, [&](const sb::Error&) {
        std::lock_guard l(out.mu);
        ++out.failed;
        out.cv.notify_all();
      });
    // Nothing is acked while the broker is down, and nothing is given up either.
    CHECK_FALSE(out.wait([](auto& o) { return o.acked + o.failed > 0; }, 1000ms));
    CHECK(publisher.pending() == 20);
    rd_kafka_mock_broker_set_up(cluster.mock, 1);
    CHECK(out.wait([](auto& o) { return o.acked == 20; }, 20s));
    CHECK(out.failed == 0);
    CHECK(publisher.pending() == 0);
  }
}

TEST_CASE("reliable publisher: a record Kafka can never take fails once, without a loop", "[unit][kafka]") {
  MockCluster cluster;
  sb::kafka::Producer producer(cluster.config(), {{"message.max.bytes", "1000"}});
  sb::kafka::ReliablePublisher publisher(producer);
  Outcomes out;
  publisher.publish("events", "k", std::string(5000, 'x'), {}, [&] {
    std::lock_guard l(out.mu);
    ++out.acked;
  }, [&](const sb::Error& e) {
    std::lock_guard l(out.mu);
    ++out.failed;
    out.error = e.what();
    out.cv.notify_all();
  });
  REQUIRE(out.wait([](auto& o) { return o.failed == 1; }, 5s));
  CHECK(out.acked == 0);
  CHECK_THAT(out.error, Catch::Contains("events"));
  CHECK(publisher.pending() == 0);
}

TEST_CASE("dead letter headers: every dead letter names its source and when", "[unit][kafka]") {
  const auto h = sb::kafka::dead_letter_headers({"sb.commands.high", 3}, 42, "invalid_command", "bad json",
                                                {{"sb-webhook-endpoint", "e1"}});
  auto get = [&](const std::string& k) {
    for (const auto& [n, v] : h)
      if (n == k) return v;
    return std::string("<missing>");
  };
  CHECK(get("sb-dlq-reason") == "invalid_command");
  CHECK(get("sb-dlq-error") == "bad json");
  CHECK(get("sb-source-topic") == "sb.commands.high");
  CHECK(get("sb-source-partition") == "3");
  CHECK(get("sb-source-offset") == "42");
  CHECK(get("sb-dead-lettered-at").size() >= 20);
  CHECK(get("sb-webhook-endpoint") == "e1");
}
