#include "switchboard/producers/command_publisher.hpp"

#include <chrono>

namespace sb {

CommandPublisher::CommandPublisher(const Config& config, int ack_timeout_ms)
    : config_(config),
      ack_timeout_ms_(ack_timeout_ms),
      producer_(config.kafka, {{"message.timeout.ms", std::to_string(ack_timeout_ms)},
                               {"linger.ms", "1"}}) {}

std::future<kafka::DeliveryResult> CommandPublisher::publish(const SendCommand& command) {
  return producer_.produce(config_.topic(lane_topic_base(command.priority)), command.tenant, to_json(command).dump(),
                           {{"sb-command-type", "message.send"}, {"sb-message-id", command.id}});
}

void CommandPublisher::publish(const SendCommand& command, kafka::Producer::Callback done) {
  producer_.produce(config_.topic(lane_topic_base(command.priority)), command.tenant, to_json(command).dump(),
                    {{"sb-command-type", "message.send"}, {"sb-message-id", command.id}}, std::move(done));
}

kafka::DeliveryResult CommandPublisher::publish_and_wait(const SendCommand& command) {
  auto fut = publish(command);
  // librdkafka fails the record after message.timeout.ms; the margin covers callback latency.
  if (fut.wait_for(std::chrono::milliseconds(ack_timeout_ms_ + 2000)) != std::future_status::ready)
    throw Unavailable("Kafka did not acknowledge message " + command.id + " in time");
  auto result = fut.get();
  if (!result.ok()) kafka::throw_error(result.err, "publishing message " + command.id);
  return result;
}

void CommandPublisher::publish_record(const std::string& topic_base, const std::string& key, std::string value,
                                      kafka::Headers headers, kafka::Producer::Callback done) {
  producer_.produce(config_.topic(topic_base), key, std::move(value), std::move(headers), std::move(done));
}

kafka::DeliveryResult CommandPublisher::publish_and_wait(const SessionCommand& command) {
  auto fut = producer_.produce(config_.topic(lane_topic_base(kLifecycleLane)), command.tenant, to_json(command).dump(),
                               {{"sb-command-type", "session." + command.action}, {"sb-session", command.session}});
  if (fut.wait_for(std::chrono::milliseconds(ack_timeout_ms_ + 2000)) != std::future_status::ready)
    throw Unavailable("Kafka did not acknowledge session command " + command.id + " in time");
  auto result = fut.get();
  if (!result.ok()) kafka::throw_error(result.err, "publishing session command " + command.id);
  return result;
}

}  // namespace sb
