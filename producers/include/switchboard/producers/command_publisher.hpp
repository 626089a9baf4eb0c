#pragma once
// The producer library: publishes validated commands to their lane topic, keyed by tenant
// (murmur2, like the Java client), and reports the broker's acknowledgement.
#include <future>
#include <string>

#include "switchboard/core/command.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"

namespace sb {

class CommandPublisher {
 public:
  // ack_timeout_ms bounds how long a record may wait for the broker before failing.
  CommandPublisher(const Config& config, int ack_timeout_ms);
  // Throws Unavailable if the record can't even be queued; the future holds the broker's answer.
  std::future<kafka::DeliveryResult> publish(const SendCommand& command);
  // Same, but `done` runs once on the producer's poll thread (must not throw or block long).
  void publish(const SendCommand& command, kafka::Producer::Callback done);
  // A session lifecycle command, on the high lane; waits for the ack, throws Unavailable.
  kafka::DeliveryResult publish_and_wait(const SessionCommand& command);
  // Any record (provider callbacks onto sb.callbacks); `done` as above.
  void publish_record(const std::string& topic_base, const std::string& key, std::string value, kafka::Headers headers,
                      kafka::Producer::Callback done);
  bool flush(int timeout_ms) { return producer_.flush(timeout_ms); }
  // Publishes and waits for the ack; throws Unavailable when Kafka did not take it.
  kafka::DeliveryResult publish_and_wait(const SendCommand& command);
  bool reachable(int timeout_ms) { return producer_.reachable(timeout_ms); }

 private:
  const Config& config_;
  int ack_timeout_ms_;
  kafka::Producer producer_;
};

}  // namespace sb
