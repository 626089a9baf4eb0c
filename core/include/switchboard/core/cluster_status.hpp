#pragma once
// What an operator looks at first (`switchboard status`): the brokers, Switchboard's topics and
// their partitions, each consumer group's members with their assignments, its committed offsets
// and lag (high watermark − committed, per partition), and the depth of the dead-letter topics.
// Read-only: it joins no group (committed offsets are fetched, not consumed).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"

namespace sb {

struct BrokerStatus {
  int32_t id = 0;
  std::string host;
  int port = 0;
  bool controller = false;
};

struct PartitionStatus {
  int32_t partition = 0;
  int32_t leader = -1;
  int replicas = 0, in_sync = 0;
  int64_t low = 0, high = 0;  // watermarks: records on the partition = high - low
};

struct TopicStatus {
  std::string name;
  std::string error;  // e.g. "unknown topic" (run `switchboard topics ensure`)
  std::vector<PartitionStatus> partitions;
  int64_t records() const;
};

struct MemberStatus {
  std::string client_id, host;
  std::vector<int32_t> partitions;  // assigned partitions of the group's topic
};

struct PartitionLag {
  int32_t partition = 0;
  int64_t committed = -1;  // -1: nothing committed yet (lag counts from the low watermark)
  int64_t high = 0, lag = 0;
};

struct GroupStatus {
  std::string name, topic, state;  // state: Stable, PreparingRebalance, Empty, Dead…
  std::string error;
  std::vector<MemberStatus> members;
  std::vector<PartitionLag> partitions;
  int64_t lag() const;
};

namespace pg {
class Pool;
}

// Sessions by status and node (node empty: not on an engine node), from PostgreSQL.
struct SessionCount {
  std::string status, node;
  int64_t count = 0;
};

namespace pg {
class Pool;
}

struct ClusterStatus {
  std::vector<BrokerStatus> brokers;
  std::vector<TopicStatus> topics;
  std::vector<GroupStatus> groups;
  int64_t dlq_depth = 0, webhooks_dlq_depth = 0;  // records on sb.dlq / sb.webhooks.dlq
  std::vector<SessionCount> sessions;
  std::string sessions_error;  // PostgreSQL could not be read
};

// One GROUP BY over the sessions table. Throws Unavailable when PostgreSQL can't be reached.
std::vector<SessionCount> read_session_counts(const Config& config);
std::vector<SessionCount> read_session_counts(pg::Pool& pool);  // on a pool the caller has

// Partitions (leader, replicas) and watermarks of each named topic: one metadata request per
// topic and one ListOffsets request per leader for each end. A topic the cluster lacks, or
// whose watermarks can't be read, says so in its `error`. Never throws. `switchboard status`
// reads every topic through it; intake's sb_dlq_depth gauge the dead-letter ones (LagProbe).
std::vector<TopicStatus> read_topic_status(rd_kafka_t* rk, const std::vector<std::string>& names, int timeout_ms);
// sb.dlq (commands a worker could not execute) and sb.webhooks.dlq, topic prefix applied.
std::vector<std::string> dead_letter_topics(const Config& config);

// Queries the cluster of config.kafka (with its topic prefix). Throws Unavailable when no broker
// answers within timeout_ms; per-topic and per-group problems are reported in their `error`.
ClusterStatus read_cluster_status(const Config& config, int timeout_ms = 10000);

nlohmann::json to_json(const ClusterStatus& s);
std::string to_text(const ClusterStatus& s);  // the human view, one section per concern

}  // namespace sb
