#include "switchboard/core/kafka.hpp"

#include <cstdlib>

#include <chrono>

#include "switchboard/core/log.hpp"
#include "switchboard/core/metrics.hpp"

namespace sb::kafka {
namespace {

// sb_kafka_errors_total{op}: client (librdkafka's error callback: brokers down, auth, transport),
// produce (a record librdkafka would not queue), delivery (a failed delivery report), consume
// (a poll that returned an error), commit (a synchronous offset commit). The error's name is in
// the log line next to it; as a label it would multiply the series for little use.
prometheus::Counter& kafka_error_counter(const char* op) {
  static const metrics::CounterSet errors("sb_kafka_errors_total",
                                          "Kafka errors by operation: client (error callback), produce, delivery, consume, commit.",
                                          "op", {"client", "produce", "delivery", "consume", "commit"});
  return errors[op];
}

void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  const auto client = std::string(rd_kafka_name(rk));
  if (level <= 3) log::error("kafka.log", {{"client", client}, {"facility", fac}, {"detail", buf}});
  else if (level <= 5) log::warn("kafka.log", {{"client", client}, {"facility", fac}, {"detail", buf}});
  else log::debug("kafka.log", {{"client", client}, {"facility", fac}, {"detail", buf}});
}

void error_cb(rd_kafka_t* rk, int err, const char* reason, void*) {
  kafka_error_counter("client").Increment();
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    // An idempotent producer's fatal error (e.g. a sequence gap after a broker was killed) makes
    // the client refuse every record from now on. Found by the chaos harness: a worker kept
    // consuming and sending for 66 s with such a producer, its events all refused. Ending the
    // process is what a crash would do, and a crash loses nothing: its uncommitted work is
    // redone by the group's other members, and by this process once its supervisor restarts it.
    char why[512] = "";
    const auto original = rd_kafka_fatal_error(rk, why, sizeof why);
    log::error("kafka.fatal", {{"client", rd_kafka_name(rk)}, {"error", rd_kafka_err2name(original)}, {"detail", why},
                               {"action", "exiting with status 75; restart the process"}});
    std::_Exit(75);
  }
  log::warn("kafka.error", {{"client", rd_kafka_name(rk)},
                            {"error", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))},
                            {"detail", reason}});
}

void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    throw ConfigError("librdkafka property '" + key + "' = '" + value + "' rejected: " + errstr);
}

// One delivery report per produced record; the opaque owns the callback.
void delivery_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  std::unique_ptr<Producer::Callback> done(static_cast<Producer::Callback*>(msg->_private));
  if (!done) return;
  DeliveryResult r;
  r.err = msg->err;
  switch (rd_kafka_message_status(msg)) {
    case RD_KAFKA_MSG_STATUS_PERSISTED: r.persisted = Persisted::Persisted; break;
    case RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED: r.persisted = Persisted::Possibly; break;
    default: r.persisted = Persisted::Not; break;
  }
  if (msg->err) {
    r.error = rd_kafka_err2str(msg->err);
    kafka_error_counter("delivery").Increment();
  }
  if (msg->rkt) r.topic = rd_kafka_topic_name(msg->rkt);
  r.partition = msg->partition;
  r.offset = msg->offset;
  try {
    (*done)(r);
  } catch (const std::exception& e) {
    log::error("kafka.delivery_callback_failed", {{"topic", r.topic}, {"detail", e.what()}});
  } catch (...) {
    log::error("kafka.delivery_callback_failed", {{"topic", r.topic}});
  }
}

std::vector<TopicPartition> to_vector(const rd_kafka_topic_partition_list_t* parts) {
  std::vector<TopicPartition> out;
  for (int i = 0; i < parts->cnt; ++i) out.push_back({parts->elems[i].topic, parts->elems[i].partition});
  return out;
}

PartitionListPtr to_list(const std::vector<TopicPartition>& tps) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(tps.size())));
  for (const auto& tp : tps) rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  return list;
}

}  // namespace

std::string to_string(const TopicPartition& tp) { return tp.topic + "[" + std::to_string(tp.partition) + "]"; }

bool is_retryable(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
      return true;
    default:
      return false;
  }
}

void throw_error(rd_kafka_resp_err_t err, const std::string& what) {
  const std::string msg = what + ": " + rd_kafka_err2str(err) + " (" + rd_kafka_err2name(err) + ")";
  if (is_retryable(err)) throw Unavailable(msg + "; the Kafka cluster is unreachable or overloaded, retry later");
  if (err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    throw NotFound(msg + "; run `switchboard topics ensure`");
  throw Error(ErrorKind::Internal, msg);
}

ConfPtr make_conf(const KafkaConfig& config, const std::map<std::string, std::string>& props) {
  ConfPtr conf(rd_kafka_conf_new());
  set(conf.get(), "bootstrap.servers", config.brokers);
  // Requests are small and latency-bound (a command, an event): a request must not wait behind
  // Nagle for the previous one's ACK (librdkafka 2.0.2 leaves Nagle on by default).
  set(conf.get(), "socket.nagle.disable", "true");
  for (const auto& [k, v] : props) set(conf.get(), k, v);
  for (const auto& [k, v] : config.librdkafka) set(conf.get(), k, v);
  rd_kafka_conf_set_log_cb(conf.get(), log_cb);
  rd_kafka_conf_set_error_cb(conf.get(), error_cb);
  kafka_error_counter("client");  // the family's series exist in every process with a Kafka client
  return conf;
}

// ---------------------------------------------------------------- Producer

Producer::Producer(const KafkaConfig& config, const std::map<std::string, std::string>& props) {
  std::map<std::string, std::string> defaults = {
      {"enable.idempotence", "true"},   // no duplicates or reordering on retry
      {"acks", "all"},                  // implied by idempotence; said so, since min.insync.replicas relies on it
      {"partitioner", "murmur2_random"},  // Java-compatible key hashing
      // Batch under load (one request carries many records), stay quick when idle.
      {"linger.ms", "5"},
      {"batch.num.messages", "10000"},
      {"message.timeout.ms", "30000"},
      {"queue.buffering.max.messages", "1000000"},
  };
  for (const auto& [k, v] : props) defaults[k] = v;
  auto conf = make_conf(config, defaults);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), delivery_cb);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
  if (!rk) throw ConfigError(std::string("cannot create Kafka producer: ") + errstr);
  conf.release();  // rd_kafka_new owns it now
  rk_.reset(rk);
  poller_ = std::thread([this] {
    while (!stop_.load()) rd_kafka_poll(rk_.get(), 100);
  });
}

Producer::~Producer() {
  if (rd_kafka_flush(rk_.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    log::warn("kafka.producer_close_unflushed", {{"outstanding", std::to_string(rd_kafka_outq_len(rk_.get()))}});
  stop_ = true;
  if (poller_.joinable()) poller_.join();
  // Purge and serve what is left so every callback runs (and frees its opaque) before destroy.
  rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(rk_.get(), 0);
}

void Producer::produce(const std::string& topic, std::string_view key, std::string_view value,
                       const Headers& headers, Callback done) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (!headers.empty()) {
    hdrs = rd_kafka_headers_new(headers.size());
    for (const auto& [k, v] : headers) rd_kafka_header_add(hdrs, k.data(), k.size(), v.data(), v.size());
  }
  auto* opaque = new Callback(std::move(done));
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      rk_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  if (err) {
    delete opaque;
    if (hdrs) rd_kafka_headers_destroy(hdrs);  // not consumed on failure
    kafka_error_counter("produce").Increment();
    throw_error(err, "cannot queue record for topic '" + topic + "'");
  }
}

std::future<DeliveryResult> Producer::produce(const std::string& topic, std::string_view key,
                                              std::string_view value, const Headers& headers) {
  auto promise = std::make_shared<std::promise<DeliveryResult>>();
  auto fut = promise->get_future();
  produce(topic, key, value, headers, [promise](const DeliveryResult& r) { promise->set_value(r); });
  return fut;
}

bool Producer::flush(int timeout_ms) { return rd_kafka_flush(rk_.get(), timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR; }

bool Producer::reachable(int timeout_ms) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk_.get(), 0, nullptr, &md, timeout_ms);
  if (md) rd_kafka_metadata_destroy(md);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

// ---------------------------------------------------------------- Consumer

Consumer::Consumer(const KafkaConfig& config, const std::string& group_id, RebalanceListener* listener,
                   const std::map<std::string, std::string>& props)
    : listener_(listener) {
  std::map<std::string, std::string> defaults = {
      {"group.id", group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      // Cooperative rebalancing: adding a replica moves only the partitions it takes over.
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"session.timeout.ms", "10000"},
      {"heartbeat.interval.ms", "1000"},
      // A fetch is answered as soon as one record is there (no added latency at any load) and
      // otherwise waits on the broker up to 100 ms: an idle consumer costs each broker 10 empty
      // fetches a second. The earlier 16 KiB / 10 ms kept every consumer-broker pair at 100 a
      // second, busy or not (bench_pipeline's idle window: 349-380 fetches/s against 50/s now;
      // at saturation 0.82 fetches per message instead of 0.53, with no CPU difference the
      // bench could resolve).
      {"fetch.min.bytes", "1"},
      {"fetch.wait.max.ms", "100"},
  };
  for (const auto& [k, v] : props) defaults[k] = v;
  auto conf = make_conf(config, defaults);
  rd_kafka_conf_set_opaque(conf.get(), this);
  rd_kafka_conf_set_rebalance_cb(conf.get(), rebalance_cb);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr);
  if (!rk) throw ConfigError(std::string("cannot create Kafka consumer: ") + errstr);
  conf.release();
  rk_.reset(rk);
  rd_kafka_poll_set_consumer(rk);
}

Consumer::~Consumer() { close(); }

void Consumer::close() {
  if (closed_) return;
  closed_ = true;
  if (auto err = rd_kafka_consumer_close(rk_.get()))
    log::warn("kafka.consumer_close_failed", {{"error", rd_kafka_err2str(err)}});
}

void Consumer::rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                            void* opaque) {
  auto* self = static_cast<Consumer*>(opaque);
  const bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  const auto tps = to_vector(parts);
  try {
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (cooperative) {
        if (auto* e = rd_kafka_incremental_assign(rk, parts)) {
          log::error("kafka.assign_failed", {{"detail", rd_kafka_error_string(e)}});
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(rk, parts);
      }
      if (self->listener_) self->listener_->on_assigned(tps);
    } else {
      const bool lost = rd_kafka_assignment_lost(rk);
      if (self->listener_) self->listener_->on_revoked(tps, lost);
      if (cooperative) {
        if (auto* e = rd_kafka_incremental_unassign(rk, parts)) {
          log::error("kafka.unassign_failed", {{"detail", rd_kafka_error_string(e)}});
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(rk, nullptr);
      }
    }
  } catch (const std::exception& e) {
    log::error("kafka.rebalance_listener_failed", {{"detail", e.what()}});
  }
}

void Consumer::subscribe(const std::vector<std::string>& topics) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& t : topics) rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(rk_.get(), list.get())) throw_error(err, "cannot subscribe");
}

MessagePtr Consumer::poll(int timeout_ms) {
  MessagePtr msg(rd_kafka_consumer_poll(rk_.get(), timeout_ms));
  if (!msg) return nullptr;
  if (msg->err) {
    if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) kafka_error_counter("consume").Increment();
    if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
      log::warn("kafka.consume_error", {{"error", rd_kafka_err2name(msg->err)}, {"detail", rd_kafka_message_errstr(msg.get())}});
    return nullptr;
  }
  return msg;
}

void Consumer::commit(const std::map<TopicPartition, int64_t>& offsets, bool async) {
  if (offsets.empty()) return;
  PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& [tp, off] : offsets)
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset = off;
  const auto err = rd_kafka_commit(rk_.get(), list.get(), async ? 1 : 0);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    kafka_error_counter("commit").Increment();
    throw_error(err, "offset commit failed");
  }
}

void Consumer::pause(const std::vector<TopicPartition>& partitions) {
  if (partitions.empty()) return;
  auto list = to_list(partitions);
  rd_kafka_pause_partitions(rk_.get(), list.get());
}

void Consumer::resume(const std::vector<TopicPartition>& partitions) {
  if (partitions.empty()) return;
  auto list = to_list(partitions);
  rd_kafka_resume_partitions(rk_.get(), list.get());
}

// ---------------------------------------------------------------- Admin

int partition_count(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  // All-topics metadata: a per-topic request can be answered from librdkafka's cache of a
  // topic it saw as missing moments ago.
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk, 1, nullptr, &md, timeout_ms);
  if (err) throw_error(err, "metadata request for topic '" + topic + "' failed");
  std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> hold(md, rd_kafka_metadata_destroy);
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic != md->topics[i].topic) continue;
    if (md->topics[i].err) throw_error(md->topics[i].err, "topic '" + topic + "'");
    return md->topics[i].partition_cnt;
  }
  throw_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "topic '" + topic + "'");
}

std::vector<std::string> ensure_topics(const KafkaConfig& config, const std::vector<TopicSpec>& topics,
                                       int timeout_ms) {
  auto conf = make_conf(config, {});
  char errstr[512];
  HandlePtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr));
  if (!rk) throw ConfigError(std::string("cannot create Kafka admin client: ") + errstr);
  conf.release();

  std::vector<rd_kafka_NewTopic_t*> specs;
  for (const auto& t : topics) {
    auto* nt = rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication_factor, errstr, sizeof errstr);
    if (!nt) throw ConfigError("topic '" + t.name + "': " + errstr);
    for (const auto& [k, v] : t.configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    specs.push_back(nt);
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof errstr);
  rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof errstr);
  rd_kafka_CreateTopics(rk.get(), specs.data(), specs.size(), opts, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout_ms + 5000);
  rd_kafka_NewTopic_destroy_array(specs.data(), specs.size());
  rd_kafka_AdminOptions_destroy(opts);
  rd_kafka_queue_destroy(queue);
  if (!ev) throw Unavailable("creating topics timed out after " + std::to_string(timeout_ms) + " ms: is Kafka at '" + config.brokers + "' up?");
  std::unique_ptr<rd_kafka_event_t, void (*)(rd_kafka_event_t*)> hold(ev, rd_kafka_event_destroy);
  if (rd_kafka_event_error(ev))
    throw_error(rd_kafka_event_error(ev), std::string("creating topics on '") + config.brokers + "'");

  std::vector<std::string> created;
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  for (size_t i = 0; i < n; ++i) {
    const std::string name = rd_kafka_topic_result_name(results[i]);
    const auto err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      created.push_back(name);
    } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw_error(err, "creating topic '" + name + "'");
    }
  }
  // Existing topics keep their partition count: changing it would move tenants between shards.
  for (const auto& t : topics) {
    int actual = 0;
    // A just-created topic takes a moment to appear in metadata.
    for (int attempt = 0;; ++attempt) {
      try {
        actual = partition_count(rk.get(), t.name, timeout_ms);
        break;
      } catch (const NotFound&) {
        if (attempt >= 50) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (actual != t.partitions)
      log::warn("kafka.topic_partition_mismatch", {{"topic", t.name}, {"configured", std::to_string(t.partitions)},
                                                   {"actual", std::to_string(actual)}});
  }
  return created;
}

Headers headers_of(const rd_kafka_message_t* msg) {
  Headers out;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs) return out;
  const char* name;
  const void* value;
  size_t size;
  for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
    out.emplace_back(name, value ? std::string(static_cast<const char*>(value), size) : std::string());
  return out;
}

std::string_view key_of(const rd_kafka_message_t* msg) {
  return msg->key ? std::string_view(static_cast<const char*>(msg->key), msg->key_len) : std::string_view();
}
std::string_view value_of(const rd_kafka_message_t* msg) {
  return msg->payload ? std::string_view(static_cast<const char*>(msg->payload), msg->len) : std::string_view();
}

int32_t partition_for_key(std::string_view key, int32_t partitions) {
  // librdkafka's murmur2 partitioner reads neither the topic nor the opaques for a non-NULL key.
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partitions, nullptr, nullptr);
}

}  // namespace sb::kafka
