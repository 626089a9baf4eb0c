// A fatal librdkafka error (an idempotent producer's sequence gap after a broker loss) makes
// the client refuse every record from then on. Found by the chaos harness: a worker kept
// consuming and sending for 66 s with such a producer. The process now ends as a crash would
// (status 75), so its group's other members take its partitions and its supervisor restarts it.
#include <librdkafka/rdkafka.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "switchboard/core/kafka.hpp"

TEST_CASE("kafka: a fatal client error ends the process with status 75", "[unit][kafka]") {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    sb::KafkaConfig c;
    c.brokers = "127.0.0.1:1";  // never reached: the fatal error is raised locally
    sb::kafka::Producer producer(c);
    rd_kafka_test_fatal_error(producer.handle(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "injected by the test");
    std::this_thread::sleep_for(std::chrono::seconds(20));  // the error callback ends it well before
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 75);
}
