#pragma once
// Makes a command's outcome durable, in this order: status row (PostgreSQL, batched) → event on
// sb.events (acked by Kafka) → on_durable(partition, offset). Only then may the offset commit.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {

// Produces a record and keeps re-producing it until Kafka acknowledges it (or the producer is
// being torn down), then calls on_acked on the producer's poll thread.
void publish_until_acked(kafka::Producer& producer, const std::string& topic, const std::string& key,
                         const std::string& value, const kafka::Headers& headers, std::function<void()> on_acked);

class ResultPublisher {
 public:
  struct Item {
    MessageOutcome outcome;
    bool already_recorded = false;  // replay: the row is final, only the event is missing
    kafka::TopicPartition source;
    int64_t offset = 0;
  };
  using Durable = std::function<void(const kafka::TopicPartition&, int64_t offset)>;

  ResultPublisher(const Config& config, MessageStore& store, kafka::Producer& producer, Durable on_durable);
  ~ResultPublisher();  // stop()
  void submit(Item item);
  // Finishes what was submitted (bounded by the Kafka producer's own timeouts), then stops.
  void stop();

 private:
  void loop();
  void flush_published();

  const Config& config_;
  MessageStore& store_;
  kafka::Producer& producer_;
  Durable on_durable_;
  std::string events_topic_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::vector<std::string> published_;  // event acked, row not yet marked
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sb
