#pragma once
// librdkafka's mock cluster, owned by a throw-away client handle: for fault injection only
// (brokers down, slow), in unit tests and in the broker-fault integration tests.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <catch2/catch.hpp>
#include <string>

#include "switchboard/core/kafka.hpp"

namespace sbtest {

struct MockCluster {
  sb::kafka::HandlePtr owner;
  rd_kafka_mock_cluster_t* mock = nullptr;

  // One broker with `topic` of `partitions` partitions.
  MockCluster(const std::string& topic, int partitions) {
    auto conf = sb::kafka::make_conf(sb::KafkaConfig{}, {{"test.mock.num.brokers", "1"}});
    char errstr[512];
    owner.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), errstr, sizeof errstr));
    REQUIRE(owner);
    mock = rd_kafka_handle_mock_cluster(owner.get());
    REQUIRE(mock);
    REQUIRE(rd_kafka_mock_topic_create(mock, topic.c_str(), partitions, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(mock); }
};

}  // namespace sbtest
