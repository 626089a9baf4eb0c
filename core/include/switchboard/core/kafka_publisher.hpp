#pragma once
// Publishes records that must reach Kafka (events, dead letters): a record the broker refuses
// for a passing reason (queue full, timeout, leader change) is produced again after a back-off
// from RetryPolicy — on the publisher's own timer thread, never by sleeping inside a delivery
// callback (the thread that frees the queue). A permanent refusal (record too large, bad
// config) is reported once through on_failed: the caller moves the item aside instead of
// looping on it forever.
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/retry_policy.hpp"

namespace sb::kafka {

class ReliablePublisher {
 public:
  using Acked = std::function<void()>;
  using Failed = std::function<void(const Error& why)>;

  // `producer` must outlive the publisher; so must whatever the callbacks reach. Callbacks run
  // on the producer's poll thread or the publisher's retry thread: quick, never throwing.
  explicit ReliablePublisher(Producer& producer, RetryPolicy policy = RetryPolicy());
  // Stops the retry thread: records waiting for a retry are dropped unacknowledged (their
  // sources stay uncommitted and are redone by the next owner).
  ~ReliablePublisher();
  ReliablePublisher(const ReliablePublisher&) = delete;
  ReliablePublisher& operator=(const ReliablePublisher&) = delete;

  void publish(std::string topic, std::string key, std::string value, Headers headers, Acked on_acked,
               Failed on_failed = {});
  // Records published and not yet acknowledged or failed.
  std::size_t pending() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with in-flight delivery callbacks
};

// The headers every dead letter carries (same names on sb.dlq and sb.webhooks.dlq).
Headers dead_letter_headers(const TopicPartition& source, int64_t offset, const std::string& reason,
                            const std::string& detail, Headers extra = {});

}  // namespace sb::kafka
