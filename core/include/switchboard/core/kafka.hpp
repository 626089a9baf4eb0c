#pragma once
// Thin RAII layer over librdkafka: one owner per C handle, typed delivery results, and no
// exception ever crossing a librdkafka callback.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"

namespace sb::kafka {

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

using Headers = std::vector<std::pair<std::string, std::string>>;

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};
std::string to_string(const TopicPartition& tp);

// Throws a librdkafka error as our vocabulary's typed exception (Unavailable for transport and
// timeouts, NotFound for unknown topics, Error(Internal) otherwise), so callers can catch by type.
[[noreturn]] void throw_error(rd_kafka_resp_err_t err, const std::string& what);
bool is_retryable(rd_kafka_resp_err_t err);

// Whether a record is on the broker (rd_kafka_message_status). A failed record is `Possibly`
// persisted when it timed out after being sent: the broker may have written it. Only `Not`
// may be treated as "never happened".
enum class Persisted { Not, Possibly, Persisted };

// The outcome of one produce, delivered once by the producer's poll thread.
struct DeliveryResult {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  Persisted persisted = Persisted::Not;
  std::string error;  // empty when ok
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  bool ok() const { return err == RD_KAFKA_RESP_ERR_NO_ERROR; }
};

// Builds a librdkafka conf: ours first, then config.librdkafka pass-through (operator wins).
ConfPtr make_conf(const KafkaConfig& config, const std::map<std::string, std::string>& props);

// Idempotent producer keyed with murmur2 (the Java client's default partitioner, so records
// published by any client with the same key land on the same partition).
class Producer {
 public:
  using Callback = std::function<void(const DeliveryResult&)>;
  // Extra properties override our defaults (e.g. message.timeout.ms for intake's deadline).
  explicit Producer(const KafkaConfig& config, const std::map<std::string, std::string>& props = {});
  ~Producer();  // flushes for up to 10 s, then stops the poll thread
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Queues a record; `done` runs exactly once on the poll thread (must not throw, must not block
  // long). Throws Unavailable when the local queue is full or the producer is fatally failed.
  void produce(const std::string& topic, std::string_view key, std::string_view value, const Headers& headers,
               Callback done);
  std::future<DeliveryResult> produce(const std::string& topic, std::string_view key, std::string_view value,
                                      const Headers& headers = {});
  // Waits up to timeout_ms for all queued records; returns false if some are still outstanding.
  bool flush(int timeout_ms);
  // Brokers reachable right now (metadata request with a deadline).
  bool reachable(int timeout_ms);
  rd_kafka_t* handle() const { return rk_.get(); }

 private:
  HandlePtr rk_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

// Notified from inside poll() when the group hands partitions out or takes them back.
class RebalanceListener {
 public:
  virtual ~RebalanceListener() = default;
  virtual void on_assigned(const std::vector<TopicPartition>& partitions) = 0;
  // Called before the partitions are taken away: commit what is finished here.
  virtual void on_revoked(const std::vector<TopicPartition>& partitions, bool lost) = 0;
};

class Consumer {
 public:
  // Manual offset management: nothing is committed unless commit() is called.
  Consumer(const KafkaConfig& config, const std::string& group_id, RebalanceListener* listener,
           const std::map<std::string, std::string>& props = {});
  ~Consumer();  // close(): leaves the group (revoke callbacks run), bounded by session timeout
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  void subscribe(const std::vector<std::string>& topics);
  // Returns a record, or nullptr on timeout / a non-fatal event (logged).
  MessagePtr poll(int timeout_ms);
  // offsets: next offset to read per partition (last processed + 1).
  void commit(const std::map<TopicPartition, int64_t>& offsets, bool async);
  void pause(const std::vector<TopicPartition>& partitions);
  void resume(const std::vector<TopicPartition>& partitions);
  void close();
  rd_kafka_t* handle() const { return rk_.get(); }

 private:
  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque);
  HandlePtr rk_;
  RebalanceListener* listener_;
  bool closed_ = false;
};

struct TopicSpec {
  std::string name;
  int partitions;
  int replication_factor;
  std::map<std::string, std::string> configs;
};
// Creates missing topics with the Admin API; existing ones are left alone (a differing
// partition count is reported, never changed silently). Returns the names created.
std::vector<std::string> ensure_topics(const KafkaConfig& config, const std::vector<TopicSpec>& topics,
                                       int timeout_ms = 30000);
// Partition count of a topic from broker metadata (throws NotFound / Unavailable).
int partition_count(rd_kafka_t* rk, const std::string& topic, int timeout_ms = 5000);

// The partition a record keyed `key` lands on among `partitions`: murmur2, as our producers
// (and the Java client) choose it, so a tenant's records are found where they were written.
int32_t partition_for_key(std::string_view key, int32_t partitions);

// Reads a record's headers into pairs (empty if none).
Headers headers_of(const rd_kafka_message_t* msg);
std::string_view key_of(const rd_kafka_message_t* msg);
std::string_view value_of(const rd_kafka_message_t* msg);

}  // namespace sb::kafka
