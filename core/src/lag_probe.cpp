#include "switchboard/core/lag_probe.hpp"

#include <algorithm>
#include <chrono>

#include "switchboard/core/command.hpp"
#include "switchboard/core/errors.hpp"

namespace sb {
namespace {

kafka::HandlePtr consumer_handle(const Config& config, const std::map<std::string, std::string>& props) {
  auto conf = kafka::make_conf(config.kafka, props);
  char errstr[512];
  kafka::HandlePtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr));
  if (!rk) throw ConfigError(std::string("cannot create a Kafka client: ") + errstr);
  conf.release();  // rd_kafka_new owns it now
  return rk;
}

}  // namespace

struct LagProbe::Group {
  std::string group, topic, lane;
  kafka::HandlePtr rk;  // group.id = the group: rd_kafka_committed reads its offsets
  std::vector<int32_t> partitions;  // from metadata, re-read every kMetadataMaxAge
  std::chrono::steady_clock::time_point metadata_at{};
};

namespace {
constexpr auto kMetadataMaxAge = std::chrono::seconds(30);
}  // namespace

rd_kafka_resp_err_t offsets_at(rd_kafka_t* rk, const rd_kafka_topic_partition_list_t* parts, int64_t which, int timeout_ms,
                               std::map<int32_t, int64_t>& out) {
  kafka::PartitionListPtr list(rd_kafka_topic_partition_list_copy(parts));
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = which;
  if (const auto err = rd_kafka_offsets_for_times(rk, list.get(), timeout_ms)) return err;
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err) return list->elems[i].err;
    out[list->elems[i].partition] = list->elems[i].offset;
  }
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int64_t GroupLag::total() const {
  int64_t n = 0;
  for (const auto& [_, lag] : partitions) n += lag;
  return n;
}

LagProbe::LagProbe(const Config& config, bool with_dispatchers)
    : config_(config), watermarks_(consumer_handle(config, {{"group.id", config.topic("sb-lag-probe")}})) {
  auto add = [&](const std::string& group, const std::string& topic, const std::string& lane) {
    auto g = std::make_unique<Group>();
    g->group = config.topic(group);
    g->topic = config.topic(topic);
    g->lane = lane;
    g->rk = consumer_handle(config, {{"group.id", g->group}, {"enable.auto.commit", "false"}});
    groups_.push_back(std::move(g));
  };
  for (const char* lane : kLanes) add(std::string("sb-workers-") + lane, lane_topic_base(lane), lane);
  if (with_dispatchers) {
    add("sb-webhooks", "sb.events", "");
    add("sb-callbacks", "sb.callbacks", "");
  }
}

LagProbe::~LagProbe() = default;

std::vector<TopicStatus> LagProbe::dead_letters(int timeout_ms) {
  return read_topic_status(watermarks_.get(), dead_letter_topics(config_), timeout_ms);
}

std::vector<GroupLag> LagProbe::read(int timeout_ms) {
  std::vector<GroupLag> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& g : groups_) {
    GroupLag gl{g->group, g->topic, g->lane, {}, {}};
    if (g->partitions.empty() || now - g->metadata_at > kMetadataMaxAge) {
      rd_kafka_topic_t* t = rd_kafka_topic_new(watermarks_.get(), g->topic.c_str(), nullptr);
      const rd_kafka_metadata_t* md = nullptr;
      const auto merr = rd_kafka_metadata(watermarks_.get(), 0, t, &md, timeout_ms);
      rd_kafka_topic_destroy(t);
      std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> hold(md, rd_kafka_metadata_destroy);
      if (merr || !md || md->topic_cnt != 1 || md->topics[0].err) {
        gl.error = merr ? rd_kafka_err2str(merr) : md && md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata";
        out.push_back(std::move(gl));
        continue;
      }
      g->partitions.clear();
      for (int i = 0; i < md->topics[0].partition_cnt; ++i) g->partitions.push_back(md->topics[0].partitions[i].id);
      g->metadata_at = now;
    }
    kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(g->partitions.size())));
    for (auto p : g->partitions) rd_kafka_topic_partition_list_add(list.get(), g->topic.c_str(), p);
    std::map<int32_t, int64_t> high, low;
    if (const auto err = rd_kafka_committed(g->rk.get(), list.get(), timeout_ms)) {
      gl.error = std::string("committed offsets: ") + rd_kafka_err2str(err);
    } else if (const auto herr = offsets_at(watermarks_.get(), list.get(), RD_KAFKA_OFFSET_END, timeout_ms, high)) {
      gl.error = std::string("high watermarks: ") + rd_kafka_err2str(herr);
    } else {
      bool uncommitted = false;
      for (int i = 0; i < list->cnt; ++i) uncommitted = uncommitted || list->elems[i].offset < 0;
      // Nothing committed on a partition yet: its lag counts from the low watermark.
      if (uncommitted)
        if (const auto lerr = offsets_at(watermarks_.get(), list.get(), RD_KAFKA_OFFSET_BEGINNING, timeout_ms, low))
          gl.error = std::string("low watermarks: ") + rd_kafka_err2str(lerr);
      if (gl.error.empty())
        for (int i = 0; i < list->cnt; ++i) {
          const auto& e = list->elems[i];
          const int64_t from = e.offset >= 0 ? e.offset : low[e.partition];
          gl.partitions[e.partition] = std::max<int64_t>(0, high[e.partition] - from);
        }
    }
    out.push_back(std::move(gl));
  }
  return out;
}

}  // namespace sb
