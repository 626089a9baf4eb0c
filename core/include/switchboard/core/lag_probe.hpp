#pragma once
// Consumer lag of Switchboard's groups, cheaply and repeatedly: one long-lived Kafka handle per
// group (it never subscribes, so it never joins the group) fetches the committed offsets, and
// the partitions' high watermarks are queried from the leaders. lag = high − committed (from
// the low watermark while nothing is committed). For intake's backpressure and /metrics; the
// one-shot operator view is cluster_status.hpp.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "switchboard/core/cluster_status.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"

namespace sb {

// Offsets of every partition in `parts` at `which` (RD_KAFKA_OFFSET_END: the high watermark,
// RD_KAFKA_OFFSET_BEGINNING: the low) into out[partition]: one ListOffsets request per leader
// for the lot, where rd_kafka_query_watermark_offsets would send one per partition.
rd_kafka_resp_err_t offsets_at(rd_kafka_t* rk, const rd_kafka_topic_partition_list_t* parts, int64_t which,
                               int timeout_ms, std::map<int32_t, int64_t>& out);

struct GroupLag {
  std::string group, topic;  // full names (topic prefix applied)
  std::string lane;          // high|default|low for the lane groups, empty otherwise
  std::map<int32_t, int64_t> partitions;  // partition → lag
  std::string error;         // set when this group could not be read this time
  int64_t total() const;
};

class LagProbe {
 public:
  // The lane groups (sb-workers-<lane> on sb.commands.<lane>), plus sb-webhooks on sb.events
  // and sb-callbacks on sb.callbacks when with_dispatchers.
  LagProbe(const Config& config, bool with_dispatchers);
  ~LagProbe();
  // Blocks up to about timeout_ms per group. Never throws: a group that can't be read says why.
  std::vector<GroupLag> read(int timeout_ms);
  // The dead-letter topics (sb.dlq, sb.webhooks.dlq) with their watermarks: depth = records().
  // The same reading `switchboard status` makes (read_topic_status), on this probe's handle.
  std::vector<TopicStatus> dead_letters(int timeout_ms);

 private:
  struct Group;
  const Config& config_;
  kafka::HandlePtr watermarks_;  // metadata and watermark queries
  std::vector<std::unique_ptr<Group>> groups_;
};

}  // namespace sb
