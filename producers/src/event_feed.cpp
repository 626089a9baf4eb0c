#include "switchboard/producers/event_feed.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "switchboard/core/kafka.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/producers/stream_leases.hpp"

namespace sb {
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

bool StreamFilter::matches(const std::string& type, const std::string* session) const {
  if (!types.empty() && std::none_of(types.begin(), types.end(), [&](const auto& p) { return event_matches(p, type); }))
    return false;
  if (!sessions.empty() && (!session || std::find(sessions.begin(), sessions.end(), *session) == sessions.end()))
    return false;
  return true;
}

std::map<std::string, std::string> event_reader_properties(const Config& config, const std::string& role, bool replay) {
  return {{"group.id", config.topic("sb-intake-stream-unused")},
          {"client.id", "switchboard-intake-" + role},
          {"enable.auto.commit", "false"},
          {"enable.auto.offset.store", "false"},
          {"enable.partition.eof", replay ? "true" : "false"},
          // A replay position retention removed must be an error, never a
          // silent jump to the end (events the client would never see).
          {"auto.offset.reset", replay ? "error" : "latest"},
          {"fetch.wait.max.ms", "100"},
          // A fetch request must not wait behind Nagle for the last ack.
          {"socket.nagle.disable", "true"},
          {"fetch.error.backoff.ms", "100"}};
}

namespace {

// A plain consumer: no group membership, no commits; partitions are assigned by hand. The
// replay reader also reports the end of a partition (where it may hand over to the live one).
kafka::HandlePtr plain_consumer(const Config& config, const std::string& role, bool replay) {
  auto conf = kafka::make_conf(config.kafka, event_reader_properties(config, role, replay));
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr);
  if (!rk) throw ConfigError(std::string("cannot create Kafka consumer for the event stream: ") + errstr);
  conf.release();  // rd_kafka_new owns it now
  return kafka::HandlePtr(rk);
}

void assign_one(rd_kafka_t* rk, const std::string& topic, int32_t partition, int64_t offset) {
  kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  if (auto err = rd_kafka_assign(rk, list.get())) kafka::throw_error(err, "assigning " + topic + " [" + std::to_string(partition) + "]");
}

// One record of sb.events, decoded once for all the streams it goes to; each wire form is
// built on first use and shared by every stream that takes it.
struct FeedEvent {
  std::string tenant, type;
  std::optional<std::string> session;
  EventCursor cursor;
  std::string body;  // the event JSON, on one line
  http::Stream::Message sse, ws;

  const http::Stream::Message& message(StreamFormat f) {
    if (f == StreamFormat::sse) {
      if (!sse) sse = std::make_shared<const std::string>("id: " + cursor.str() + "\nevent: " + type + "\ndata: " + body + "\n\n");
      return sse;
    }
    if (!ws) ws = std::make_shared<const std::string>(R"({"cursor":")" + cursor.str() + R"(","event":)" + body + "}");
    return ws;
  }
};

// nullopt for what no stream may get: not JSON, no tenant/type, or a key naming another tenant.
std::optional<FeedEvent> decode(const rd_kafka_message_t* m, bool& foreign) {
  foreign = false;
  json j = json::parse(kafka::value_of(m), nullptr, false);
  if (!j.is_object() || !j.contains("tenant") || !j["tenant"].is_string() || !j.contains("type") || !j["type"].is_string())
    return std::nullopt;
  FeedEvent ev;
  ev.tenant = j["tenant"].get<std::string>();
  if (kafka::key_of(m) != ev.tenant) {
    foreign = true;
    return std::nullopt;
  }
  ev.type = j["type"].get<std::string>();
  if (j.contains("session") && j["session"].is_string()) ev.session = j["session"].get<std::string>();
  ev.cursor = {m->partition, m->offset};
  ev.body = j.dump();
  return ev;
}

http::Stream::Message text(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

// A control message, not an event. SSE: a named event "stream.<what>" without an id (so
// EventSource keeps its Last-Event-ID); WebSocket: {"stream": "<what>", …} (events have "cursor").
http::Stream::Message control(StreamFormat f, const std::string& what, const json& data) {
  if (f == StreamFormat::sse) return text("event: stream." + what + "\ndata: " + data.dump() + "\n\n");
  json m = data;
  m["stream"] = what;
  return text(m.dump());
}

struct Subscriber {
  Subscription sub;
  int32_t partition;
  std::shared_ptr<http::Stream> stream;
  std::string lease;  // StreamLeases' id of this stream's place
  // Guarded by EventFeed::Impl::mu.
  bool live = false;   // the live reader delivers; until then the replay reader does
  bool gone = false;   // closed or closing: deliver nothing more
  int64_t next = 0;    // the next offset this stream wants
};

}  // namespace

struct EventFeed::Impl : std::enable_shared_from_this<EventFeed::Impl> {
  const Config& config;
  const std::string topic;
  const StreamConfig limits;

  mutable std::mutex mu;
  std::condition_variable cv;  // replay jobs, stop
  std::unordered_map<std::string, std::vector<std::shared_ptr<Subscriber>>> by_tenant;
  std::unordered_map<std::string, int> places;  // admitted or attached streams per tenant
  std::vector<int64_t> live_next;               // per partition: the next offset the live reader handles
  std::deque<std::shared_ptr<Subscriber>> replay_jobs;
  bool stopping = false;
  std::atomic<bool> ready{false};

  std::atomic<uint64_t> open_streams{0}, events_read{0}, events_delivered{0}, events_replayed{0}, overflows{0},
      foreign_records{0};

  StreamLeases leases;  // the cluster-wide count of streams per tenant
  kafka::HandlePtr live_rk, replay_rk;
  std::thread live_thread, replay_thread;  // last: they use everything above

  explicit Impl(const Config& c)
      : config(c),
        topic(c.topic("sb.events")),
        limits(c.stream),
        leases(c),
        live_rk(plain_consumer(c, "stream-live", false)),
        replay_rk(plain_consumer(c, "stream-replay", true)) {}

  void start() {
    live_thread = std::thread([this] { run_live(); });
    replay_thread = std::thread([this] { run_replay(); });
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      stopping = true;
      cv.notify_all();
    }
    if (live_thread.joinable()) live_thread.join();
    if (replay_thread.joinable()) replay_thread.join();
  }

  bool wait_or_stop(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, d, [&] { return stopping; });
  }

  // ---- live reader

  // Partitions and their ends, then assigned at exactly those offsets: live_next is then true
  // from the first moment, which is what makes the hand-over from replay exact.
  void find_ends() {
    const int n = kafka::partition_count(live_rk.get(), topic, 5000);
    std::vector<int64_t> ends(static_cast<std::size_t>(n));
    kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(n));
    for (int p = 0; p < n; ++p) {
      int64_t lo = 0, hi = 0;
      if (auto err = rd_kafka_query_watermark_offsets(live_rk.get(), topic.c_str(), p, &lo, &hi, 5000))
        kafka::throw_error(err, "reading the end of " + topic + " [" + std::to_string(p) + "]");
      ends[static_cast<std::size_t>(p)] = hi;
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = hi;
    }
    if (auto err = rd_kafka_assign(live_rk.get(), list.get())) kafka::throw_error(err, "assigning " + topic);
    {
      std::lock_guard lock(mu);
      live_next = std::move(ends);
    }
    ready = true;
    log::info("stream.feed_ready", {{"topic", topic}, {"partitions", std::to_string(n)}});
  }

  void run_live() {
    auto next_heartbeat = SteadyClock::now() + std::chrono::milliseconds(limits.heartbeat_ms);
    // A new topic has no leader for a moment (retry soon); a missing one may take a while to be
    // created (back off to 5 s, and say so once, not at every try).
    auto retry_in = std::chrono::milliseconds(250);
    for (int failures = 0; !ready; ++failures) {
      try {
        find_ends();
      } catch (const std::exception& e) {
        if (failures == 0 || failures % 20 == 0)
          log::warn("stream.feed_not_ready", {{"topic", topic}, {"detail", e.what()}, {"tries", std::to_string(failures + 1)}});
        if (wait_or_stop(retry_in)) return;
        retry_in = std::min(retry_in * 2, std::chrono::milliseconds(5000));
      }
      std::lock_guard lock(mu);
      if (stopping) return;
    }
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      kafka::MessagePtr m(rd_kafka_consumer_poll(live_rk.get(), 100));
      if (SteadyClock::now() >= next_heartbeat) {
        heartbeat_all();
        next_heartbeat = SteadyClock::now() + std::chrono::milliseconds(limits.heartbeat_ms);
      }
      if (!m) continue;
      if (m->err) {
        log::warn("stream.live_read_error", {{"topic", topic}, {"detail", rd_kafka_message_errstr(m.get())}});
        continue;
      }
      ++events_read;
      dispatch_live(m.get());
    }
  }

  void dispatch_live(const rd_kafka_message_t* m) {
    bool foreign = false;
    auto ev = decode(m, foreign);
    if (foreign) ++foreign_records;
    std::lock_guard lock(mu);
    if (static_cast<std::size_t>(m->partition) < live_next.size()) live_next[static_cast<std::size_t>(m->partition)] = m->offset + 1;
    if (!ev) return;
    auto it = by_tenant.find(ev->tenant);
    if (it == by_tenant.end()) return;
    for (auto& s : it->second) {
      if (!s->live || s->gone || s->partition != m->partition || m->offset < s->next) continue;
      s->next = m->offset + 1;
      if (s->sub.filter.matches(ev->type, ev->session ? &*ev->session : nullptr)) deliver(*s, *ev);
    }
  }

  // Under mu. A full buffer closes the stream instead of growing or waiting.
  void deliver(Subscriber& s, FeedEvent& ev) {
    if (s.stream->queued() >= static_cast<std::size_t>(limits.buffer_events)) return overflow(s);
    if (s.stream->send(ev.message(s.sub.format))) ++events_delivered;
  }

  void overflow(Subscriber& s) {
    s.gone = true;
    ++overflows;
    log::warn("stream.slow_client_disconnected", {{"tenant", s.sub.tenant}, {"buffer_events", std::to_string(limits.buffer_events)}});
    const std::string why = "slow consumer: more than " + std::to_string(limits.buffer_events) +
                            " events waiting (stream.buffer_events); reconnect with the cursor of the last event received";
    if (s.sub.format == StreamFormat::sse)
      s.stream->close(*control(StreamFormat::sse, "error", {{"reason", "slow_consumer"}, {"error", why}}), 1013);
    else
      s.stream->close("slow consumer: buffer of " + std::to_string(limits.buffer_events) + " events overflowed; resume from your last cursor", 1013);
  }

  void heartbeat_all() {
    std::lock_guard lock(mu);
    for (auto& [tenant, subs] : by_tenant)
      for (auto& s : subs)
        if (!s->gone) s->stream->heartbeat();
  }

  // ---- replay reader

  void run_replay() {
    bool assigned = false;
    for (;;) {
      std::shared_ptr<Subscriber> job;
      {
        std::unique_lock lock(mu);
        if (replay_jobs.empty() && assigned) {
          lock.unlock();
          rd_kafka_assign(replay_rk.get(), nullptr);  // idle: stop fetching
          assigned = false;
          lock.lock();
        }
        cv.wait(lock, [&] { return stopping || !replay_jobs.empty(); });
        if (stopping) return;
        job = replay_jobs.front();
        replay_jobs.pop_front();
      }
      assigned = true;
      bool more = false, backlogged = false;
      try {
        more = replay_slice(*job, backlogged);
      } catch (const std::exception& e) {
        log::warn("stream.replay_failed", {{"tenant", job->sub.tenant}, {"detail", e.what()}});
        more = true;
        backlogged = true;  // retry after a pause, like a backlog
      }
      if (!more) continue;
      std::unique_lock lock(mu);
      replay_jobs.push_back(job);
      // Only backlogged clients waiting: give them time to read instead of spinning.
      if (backlogged) cv.wait_for(lock, std::chrono::milliseconds(5), [&] { return stopping; });
    }
  }

  // Replays up to a slice of one stream's partition; true when it has more to do. It ends by
  // handing the stream to the live reader at the live reader's own position.
  bool replay_slice(Subscriber& s, bool& backlogged) {
    {
      std::lock_guard lock(mu);
      if (s.gone) return false;
      if (s.next >= live_next[static_cast<std::size_t>(s.partition)]) {
        s.live = true;
        return false;
      }
    }
    assign_one(replay_rk.get(), topic, s.partition, s.next);
    const auto deadline = SteadyClock::now() + std::chrono::milliseconds(200);
    const std::size_t backlog = std::max<std::size_t>(1, static_cast<std::size_t>(limits.buffer_events) / 2);
    for (int n = 0; n < 2000 && SteadyClock::now() < deadline;) {
      if (s.stream->queued() >= backlog) {
        backlogged = true;
        return true;
      }
      kafka::MessagePtr m(rd_kafka_consumer_poll(replay_rk.get(), 100));
      if (!m) continue;
      std::lock_guard lock(mu);
      if (s.gone || stopping) return false;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (s.next >= live_next[static_cast<std::size_t>(s.partition)]) {
          s.live = true;
          return false;
        }
        continue;  // the live reader has already seen more: they are on their way here
      }
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        // Retention removed the rest of the replay between admit() and here.
        s.gone = true;
        const std::string why = "the events after this cursor were removed by sb.events' retention while replaying; reconnect";
        s.stream->close(s.sub.format == StreamFormat::sse
                            ? *control(StreamFormat::sse, "error", {{"reason", "cursor_expired"}, {"error", why}})
                            : why,
                        1011);
        return false;
      }
      if (m->err) {
        log::warn("stream.replay_read_error", {{"topic", topic}, {"detail", rd_kafka_message_errstr(m.get())}});
        backlogged = true;
        return true;
      }
      if (m->partition != s.partition || m->offset < s.next) continue;
      if (m->offset >= live_next[static_cast<std::size_t>(s.partition)]) {
        s.live = true;  // the live reader has not handled this one yet: it will, for us too
        return false;
      }
      ++n;
      s.next = m->offset + 1;
      bool foreign = false;
      auto ev = decode(m.get(), foreign);
      if (!ev || ev->tenant != s.sub.tenant) continue;  // another tenant's record: never theirs to see
      if (!s.sub.filter.matches(ev->type, ev->session ? &*ev->session : nullptr)) continue;
      deliver(s, *ev);
      ++events_replayed;
    }
    return true;
  }

  // ---- admission

  // A place freed: this process's count and the tenant's lease (removed in the background).
  void release(const std::string& tenant, const std::string& lease) {
    {
      std::lock_guard lock(mu);
      auto it = places.find(tenant);
      if (it != places.end() && --it->second <= 0) places.erase(it);
    }
    if (!lease.empty()) leases.release(tenant, lease);
  }

  void forget(const std::shared_ptr<Subscriber>& s) {
    {
      std::lock_guard lock(mu);
      s->gone = true;
      auto it = by_tenant.find(s->sub.tenant);
      if (it != by_tenant.end()) {
        std::erase(it->second, s);
        if (it->second.empty()) by_tenant.erase(it);
      }
    }
    --open_streams;
    release(s->sub.tenant, s->lease);
  }
};

EventFeed::Admission::Admission(EventFeed* feed, Subscription sub, int32_t partition, std::string lease)
    : feed_(feed), sub_(std::move(sub)), partition_(partition), lease_(std::move(lease)) {}
EventFeed::Admission::Admission(Admission&& o) noexcept
    : feed_(std::exchange(o.feed_, nullptr)), sub_(std::move(o.sub_)), partition_(o.partition_), lease_(std::move(o.lease_)) {}
EventFeed::Admission::~Admission() {
  if (feed_) feed_->impl_->release(sub_.tenant, lease_);
}

EventFeed::EventFeed(const Config& config) : impl_(std::make_shared<Impl>(config)) { impl_->start(); }
EventFeed::~EventFeed() { impl_->stop(); }

bool EventFeed::ready() const { return impl_->ready; }

std::variant<StreamRefusal, EventFeed::Admission> EventFeed::admit(Subscription sub) {
  auto& im = *impl_;
  if (!im.ready)
    return StreamRefusal{503, "the event stream is starting (" + im.topic + " not reachable yet); retry shortly", {}, {}};
  int32_t partitions = 0;
  {
    std::lock_guard lock(im.mu);
    partitions = static_cast<int32_t>(im.live_next.size());
  }
  const int32_t partition = kafka::partition_for_key(sub.tenant, partitions);
  if (sub.after) {
    const auto& c = *sub.after;
    if (c.partition != partition)
      return StreamRefusal{400, "cursor '" + c.str() + "' is not from this tenant's event stream", "after", {}};
    int64_t lo = 0, hi = 0;
    if (auto err = rd_kafka_query_watermark_offsets(im.live_rk.get(), im.topic.c_str(), partition, &lo, &hi, 5000))
      return StreamRefusal{503, std::string("cannot read the retention window of ") + im.topic + ": " + rd_kafka_err2str(err) + "; retry", {}, {}};
    if (c.offset >= hi)
      return StreamRefusal{400, "cursor '" + c.str() + "' is ahead of the event stream (next event: " +
                                    EventCursor{partition, hi}.str() + "); it was not issued by this stream", "after", {}};
    if (c.offset + 1 < lo) {
      const EventCursor oldest{partition, lo};
      return StreamRefusal{410,
                           "cursor '" + c.str() + "' is older than the retention of " + im.topic + ": the oldest event still kept is '" +
                               oldest.str() + "'; reconnect with ?after=" + EventCursor{partition, lo - 1}.str() +
                               " to receive every event still kept, or without a cursor for live events only",
                           "after",
                           {{"oldest_cursor", oldest.str()}, {"resume_after", EventCursor{partition, lo - 1}.str()}}};
    }
  }
  const int limit = im.limits.max_connections_per_tenant;
  {
    // This process's count first: it is the whole limit while Redis is unreachable, and it
    // spares Redis a round trip for what this replica alone already fills.
    std::lock_guard lock(im.mu);
    int& n = im.places[sub.tenant];
    if (n >= limit) {
      if (n == 0) im.places.erase(sub.tenant);
      return StreamRefusal{429, "this tenant already has " + std::to_string(n) + " open event streams on this intake replica (stream.max_connections_per_tenant); close one or retry later", {}, {}};
    }
    ++n;
  }
  auto grant = im.leases.acquire(sub.tenant, limit);
  if (!grant.allowed) {
    im.release(sub.tenant, {});
    return StreamRefusal{429, "this tenant already has " + std::to_string(grant.open) + " open event streams across intake replicas (stream.max_connections_per_tenant); close one or retry later", {}, {}};
  }
  return Admission(this, std::move(sub), partition, std::move(grant.lease));
}

void EventFeed::attach(Admission admission, const std::shared_ptr<http::Stream>& stream) {
  auto& im = *impl_;
  admission.feed_ = nullptr;  // the place is the stream's now; forget() frees it
  auto s = std::make_shared<Subscriber>();
  s->sub = std::move(admission.sub_);
  s->partition = admission.partition_;
  s->lease = std::move(admission.lease_);
  s->stream = stream;
  json open = {{"partition", s->partition}, {"after", s->sub.after ? json(s->sub.after->str()) : json(nullptr)}};
  {
    // The opening message, then the registration, under the lock the live reader delivers
    // under: a client that has seen stream.open gets every event the broker takes after that.
    std::lock_guard lock(im.mu);
    stream->send(control(s->sub.format, "open", open));
    ++im.open_streams;
    const int64_t live = im.live_next[static_cast<std::size_t>(s->partition)];
    if (s->sub.after && s->sub.after->offset + 1 < live) {
      s->next = s->sub.after->offset + 1;
      im.replay_jobs.push_back(s);
      im.cv.notify_all();
    } else {
      // Live now; a cursor ahead of this replica's reader (another replica read further) skips
      // what the client already has.
      s->live = true;
      s->next = s->sub.after ? s->sub.after->offset + 1 : live;
    }
    im.by_tenant[s->sub.tenant].push_back(s);
  }
  log::info("stream.opened", {{"tenant", s->sub.tenant}, {"format", s->sub.format == StreamFormat::sse ? "sse" : "websocket"},
                              {"after", s->sub.after ? s->sub.after->str() : ""}});
  // Outside the lock: it runs at once if the client is already gone.
  stream->on_closed([weak = std::weak_ptr<Impl>(impl_), s] {
    if (auto im = weak.lock()) im->forget(s);
  });
}

FeedStats EventFeed::stats() const {
  const auto& im = *impl_;
  return {im.open_streams.load(), im.events_read.load(), im.events_delivered.load(), im.events_replayed.load(),
          im.overflows.load(), im.foreign_records.load(), im.leases.fallbacks()};
}

}  // namespace sb
