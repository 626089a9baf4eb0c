#include "switchboard/producers/command_publisher.hpp"
#include "switchboard/producers/command_record.hpp"

#include <chrono>

namespace sb {

namespace {

// Appends s as a JSON string the way nlohmann's dump() writes it; false (nothing appended) when
// s has a byte at or above 0x80, which is left to nlohmann (UTF-8 checks).
bool append_json_string_ascii(std::string& out, const std::string& s) {
  for (const unsigned char ch : s)
    if (ch >= 0x80) return false;
  out += '"';
  for (const unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[ch >> 4];
          out += kHex[ch & 0xf];
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  out += '"';
  return true;
}

}  // namespace

std::string send_command_record(const SendCommand& c) {
  std::string out;
  out.reserve(160 + c.text.size() + c.to.size());
  // nlohmann::json objects are std::maps: keys in this (sorted) order.
  const bool ascii = [&] {
    out += "{\"created_at\":";
    if (!append_json_string_ascii(out, c.created_at)) return false;
    out += ",\"data\":{\"text\":";
    if (!append_json_string_ascii(out, c.text)) return false;
    out += ",\"to\":";
    if (!append_json_string_ascii(out, c.to)) return false;
    out += "},\"id\":";
    if (!append_json_string_ascii(out, c.id)) return false;
    out += ",\"priority\":";
    if (!append_json_string_ascii(out, c.priority)) return false;
    out += ",\"session\":";
    if (!append_json_string_ascii(out, c.session)) return false;
    out += ",\"tenant\":";
    if (!append_json_string_ascii(out, c.tenant)) return false;
    out += ",\"type\":\"message.send\"}";
    return true;
  }();
  return ascii ? out : to_json(c).dump();
}

CommandPublisher::CommandPublisher(const Config& config, int ack_timeout_ms)
    : config_(config),
      ack_timeout_ms_(ack_timeout_ms),
      producer_(config.kafka, {{"message.timeout.ms", std::to_string(ack_timeout_ms)},
                               {"linger.ms", "1"}}) {}

std::future<kafka::DeliveryResult> CommandPublisher::publish(const SendCommand& command) {
  return producer_.produce(config_.topic(lane_topic_base(command.priority)), command.tenant, send_command_record(command),
                           {{"sb-command-type", "message.send"}, {"sb-message-id", command.id}});
}

void CommandPublisher::publish(const SendCommand& command, kafka::Producer::Callback done) {
  producer_.produce(config_.topic(lane_topic_base(command.priority)), command.tenant, send_command_record(command),
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
