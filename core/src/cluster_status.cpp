#include "switchboard/core/cluster_status.hpp"

#include <map>
#include <memory>
#include <sstream>

#include "switchboard/core/command.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/lag_probe.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {
namespace {

using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)>;
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct OptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};

// The groups Switchboard's roles consume with, and their topics (as the workers and the
// dispatcher name them: workers/src/lane_worker.cpp, workers/src/webhooks/webhook_dispatcher.cpp).
std::vector<std::pair<std::string, std::string>> known_groups(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* lane : kLanes) out.emplace_back(c.topic(std::string("sb-workers-") + lane), c.topic(lane_topic_base(lane)));
  out.emplace_back(c.topic("sb-webhooks"), c.topic("sb.events"));
  return out;
}

std::vector<std::string> known_topics(const Config& c) {
  std::vector<std::string> out;
  for (const char* lane : kLanes) out.push_back(c.topic(lane_topic_base(lane)));
  out.push_back(c.topic("sb.events"));
  for (auto& t : dead_letter_topics(c)) out.push_back(std::move(t));
  return out;
}

kafka::HandlePtr client(const Config& config, const std::map<std::string, std::string>& props) {
  auto conf = kafka::make_conf(config.kafka, props);
  char errstr[512];
  kafka::HandlePtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr));
  if (!rk) throw ConfigError(std::string("cannot create a Kafka client: ") + errstr);
  conf.release();
  return rk;
}

// Members and assignments of the groups (Admin API DescribeConsumerGroups).
void describe_groups(rd_kafka_t* rk, std::vector<GroupStatus>& groups, int timeout_ms) {
  std::vector<const char*> names;
  for (const auto& g : groups) names.push_back(g.name.c_str());
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));
  std::unique_ptr<rd_kafka_AdminOptions_t, OptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS));
  char errstr[512];
  rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr, sizeof errstr);
  rd_kafka_DescribeConsumerGroups(rk, names.data(), names.size(), options.get(), queue.get());
  std::unique_ptr<rd_kafka_event_t, EventDeleter> ev(rd_kafka_queue_poll(queue.get(), timeout_ms + 2000));
  if (!ev || rd_kafka_event_error(ev.get())) {
    const std::string why = ev ? rd_kafka_event_error_string(ev.get()) : "timed out";
    for (auto& g : groups) g.error = "cannot describe the group: " + why;
    return;
  }
  std::size_t n = 0;
  const auto* result = rd_kafka_event_DescribeConsumerGroups_result(ev.get());
  const auto** described = rd_kafka_DescribeConsumerGroups_result_groups(result, &n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto* d = described[i];
    for (auto& g : groups) {
      if (g.name != rd_kafka_ConsumerGroupDescription_group_id(d)) continue;
      if (const auto* err = rd_kafka_ConsumerGroupDescription_error(d)) {
        g.error = rd_kafka_error_string(err);
        break;
      }
      g.state = rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(d));
      for (std::size_t m = 0; m < rd_kafka_ConsumerGroupDescription_member_count(d); ++m) {
        const auto* member = rd_kafka_ConsumerGroupDescription_member(d, m);
        MemberStatus ms{rd_kafka_MemberDescription_client_id(member), rd_kafka_MemberDescription_host(member), {}};
        const auto* parts = rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(member));
        for (int p = 0; parts && p < parts->cnt; ++p)
          if (g.topic == parts->elems[p].topic) ms.partitions.push_back(parts->elems[p].partition);
        g.members.push_back(std::move(ms));
      }
    }
  }
}

// Committed offsets of one group on its topic, and the lag against the high watermarks.
void group_lag(const Config& config, GroupStatus& g, const TopicStatus& topic, int timeout_ms) {
  if (!topic.error.empty()) return;
  auto rk = client(config, {{"group.id", g.name}, {"enable.auto.commit", "false"}});
  kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(topic.partitions.size())));
  for (const auto& p : topic.partitions) rd_kafka_topic_partition_list_add(list.get(), g.topic.c_str(), p.partition);
  if (const auto err = rd_kafka_committed(rk.get(), list.get(), timeout_ms)) {
    g.error = std::string("cannot read committed offsets: ") + rd_kafka_err2str(err);
    return;
  }
  for (const auto& p : topic.partitions) {
    PartitionLag pl{p.partition, -1, p.high, 0};
    for (int i = 0; i < list->cnt; ++i)
      if (list->elems[i].partition == p.partition && list->elems[i].offset >= 0) pl.committed = list->elems[i].offset;
    pl.lag = p.high - (pl.committed >= 0 ? pl.committed : p.low);
    g.partitions.push_back(pl);
  }
}

}  // namespace

std::vector<std::string> dead_letter_topics(const Config& config) {
  return {config.topic("sb.dlq"), config.topic("sb.webhooks.dlq")};
}

std::vector<TopicStatus> read_topic_status(rd_kafka_t* rk, const std::vector<std::string>& names, int timeout_ms) {
  std::vector<TopicStatus> out;
  for (const auto& name : names) {
    TopicStatus t{name, "unknown topic (run `switchboard topics ensure`)", {}};
    rd_kafka_topic_t* handle = rd_kafka_topic_new(rk, name.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const auto merr = rd_kafka_metadata(rk, 0, handle, &md, timeout_ms);
    rd_kafka_topic_destroy(handle);
    MetadataPtr hold(md, rd_kafka_metadata_destroy);
    if (merr) t.error = std::string("metadata: ") + rd_kafka_err2str(merr);
    for (int i = 0; !merr && md && i < md->topic_cnt; ++i) {
      const auto& mt = md->topics[i];
      if (name != mt.topic) continue;
      t.error = mt.err ? rd_kafka_err2str(mt.err) : "";
      if (mt.err) break;
      kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(mt.partition_cnt));
      for (int p = 0; p < mt.partition_cnt; ++p) {
        const auto& mp = mt.partitions[p];
        t.partitions.push_back({mp.id, mp.leader, mp.replica_cnt, mp.isr_cnt, 0, 0});
        rd_kafka_topic_partition_list_add(list.get(), name.c_str(), mp.id);
      }
      std::map<int32_t, int64_t> low, high;
      if (t.partitions.empty()) break;
      if (const auto err = offsets_at(rk, list.get(), RD_KAFKA_OFFSET_BEGINNING, timeout_ms, low))
        t.error = std::string("watermarks: ") + rd_kafka_err2str(err);
      else if (const auto herr = offsets_at(rk, list.get(), RD_KAFKA_OFFSET_END, timeout_ms, high))
        t.error = std::string("watermarks: ") + rd_kafka_err2str(herr);
      for (auto& ps : t.partitions) {
        ps.low = low[ps.partition];
        ps.high = high[ps.partition];
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

int64_t TopicStatus::records() const {
  int64_t n = 0;
  for (const auto& p : partitions) n += p.high - p.low;
  return n;
}

int64_t GroupStatus::lag() const {
  int64_t n = 0;
  for (const auto& p : partitions) n += p.lag;
  return n;
}

ClusterStatus read_cluster_status(const Config& config, int timeout_ms) {
  auto rk = client(config, {{"group.id", config.topic("sb-status")}});
  const rd_kafka_metadata_t* md = nullptr;
  if (const auto err = rd_kafka_metadata(rk.get(), 0, nullptr, &md, timeout_ms))  // brokers; topics below
    throw Unavailable("no Kafka broker of '" + config.kafka.brokers + "' answered: " + rd_kafka_err2str(err) +
                      " (check kafka.brokers / SWITCHBOARD_KAFKA_BROKERS)");
  MetadataPtr hold(md, rd_kafka_metadata_destroy);

  ClusterStatus s;
  const int32_t controller = rd_kafka_controllerid(rk.get(), timeout_ms);
  for (int i = 0; i < md->broker_cnt; ++i)
    s.brokers.push_back({md->brokers[i].id, md->brokers[i].host, md->brokers[i].port, md->brokers[i].id == controller});

  s.topics = read_topic_status(rk.get(), known_topics(config), timeout_ms);
  for (const auto& t : s.topics) {
    if (t.name == config.topic("sb.dlq")) s.dlq_depth = t.records();
    if (t.name == config.topic("sb.webhooks.dlq")) s.webhooks_dlq_depth = t.records();
  }

  for (const auto& [group, topic] : known_groups(config)) s.groups.push_back({group, topic, "", "", {}, {}});
  describe_groups(rk.get(), s.groups, timeout_ms);
  for (auto& g : s.groups)
    for (const auto& t : s.topics)
      if (t.name == g.topic) group_lag(config, g, t, timeout_ms);
  try {
    s.sessions = read_session_counts(config);
  } catch (const std::exception& e) {
    s.sessions_error = e.what();  // Kafka's half of the picture is still worth printing
  }
  return s;
}

std::vector<SessionCount> read_session_counts(const Config& config) {
  auto pg = config.postgres;
  pg.pool_size = 1;
  pg::Pool pool(pg);
  return read_session_counts(pool);
}

std::vector<SessionCount> read_session_counts(pg::Pool& pool) {
  return pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<SessionCount> out;
    for (const auto& r : tx.exec("SELECT status, COALESCE(node, ''), count(*) FROM sessions GROUP BY 1, 2 ORDER BY 1, 2"))
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<int64_t>()});
    return out;
  });
}

nlohmann::json to_json(const ClusterStatus& s) {
  using nlohmann::json;
  json out = {{"brokers", json::array()}, {"topics", json::array()}, {"groups", json::array()},
              {"dlq", {{"sb.dlq", s.dlq_depth}, {"sb.webhooks.dlq", s.webhooks_dlq_depth}}}};
  for (const auto& b : s.brokers)
    out["brokers"].push_back({{"id", b.id}, {"host", b.host}, {"port", b.port}, {"controller", b.controller}});
  for (const auto& t : s.topics) {
    json parts = json::array();
    for (const auto& p : t.partitions)
      parts.push_back({{"partition", p.partition}, {"leader", p.leader}, {"replicas", p.replicas},
                       {"in_sync", p.in_sync}, {"low", p.low}, {"high", p.high}});
    json jt = {{"name", t.name}, {"partitions", parts}, {"records", t.records()}};
    if (!t.error.empty()) jt["error"] = t.error;
    out["topics"].push_back(jt);
  }
  for (const auto& g : s.groups) {
    json members = json::array(), parts = json::array();
    for (const auto& m : g.members) members.push_back({{"client_id", m.client_id}, {"host", m.host}, {"partitions", m.partitions}});
    for (const auto& p : g.partitions)
      parts.push_back({{"partition", p.partition}, {"committed", p.committed}, {"high", p.high}, {"lag", p.lag}});
    json jg = {{"group", g.name}, {"topic", g.topic}, {"state", g.state}, {"members", members},
               {"partitions", parts}, {"lag", g.lag()}};
    if (!g.error.empty()) jg["error"] = g.error;
    out["groups"].push_back(jg);
  }
  json sessions = json::array();
  for (const auto& c : s.sessions) sessions.push_back({{"status", c.status}, {"node", c.node}, {"count", c.count}});
  out["sessions"] = sessions;
  if (!s.sessions_error.empty()) out["sessions_error"] = s.sessions_error;
  return out;
}

std::string to_text(const ClusterStatus& s) {
  std::ostringstream out;
  out << "brokers (" << s.brokers.size() << ")\n";
  for (const auto& b : s.brokers)
    out << "  " << b.id << "  " << b.host << ":" << b.port << (b.controller ? "  controller" : "") << "\n";
  out << "topics\n";
  for (const auto& t : s.topics) {
    int under_replicated = 0;
    for (const auto& p : t.partitions) under_replicated += p.in_sync < p.replicas;
    out << "  " << t.name << "  partitions " << t.partitions.size() << "  records " << t.records();
    if (under_replicated) out << "  under-replicated " << under_replicated;
    if (!t.error.empty()) out << "  ERROR " << t.error;
    out << "\n";
  }
  out << "consumer groups\n";
  for (const auto& g : s.groups) {
    out << "  " << g.name << " on " << g.topic << "  " << (g.state.empty() ? "?" : g.state) << "  members "
        << g.members.size() << "  lag " << g.lag();
    if (!g.error.empty()) out << "  ERROR " << g.error;
    out << "\n";
    for (const auto& m : g.members) {
      out << "    " << m.client_id << " (" << m.host << ")  partitions";
      for (auto p : m.partitions) out << " " << p;
      out << "\n";
    }
    for (const auto& p : g.partitions)
      if (p.lag > 0) out << "    partition " << p.partition << "  committed " << p.committed << "  high " << p.high << "  lag " << p.lag << "\n";
  }
  out << "sessions by status and node\n";
  if (!s.sessions_error.empty()) out << "  ERROR " << s.sessions_error << "\n";
  for (const auto& c : s.sessions) out << "  " << c.status << "  " << (c.node.empty() ? "-" : c.node) << "  " << c.count << "\n";
  out << "dead letters\n  sb.dlq " << s.dlq_depth << "\n  sb.webhooks.dlq " << s.webhooks_dlq_depth << "\n";
  return out.str();
}

}  // namespace sb
