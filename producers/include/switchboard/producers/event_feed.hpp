#pragma once
// EventFeed: sb.events for the connected clients of one intake process.
//
// One live reader per process (a plain consumer, partitions assigned by hand, no group) reads
// every partition from the end and fans each record out to this process's streams of the
// record's tenant. A client resuming from a cursor is caught up by the replay reader (a second
// plain consumer shared by every resume): it reads the tenant's one partition (sb.events is
// keyed by tenant) from the cursor, and hands the client over to the live reader at the exact
// offset where the live reader is, so nothing is missed or doubled — on any replica, since the
// cursor is a Kafka position and Kafka is the only shared state.
//
// Every record goes only to streams of the tenant it names (its key and its "tenant" field
// must agree), whatever partition or offset a cursor pointed at. A stream whose client reads
// slower than its events arrive holds at most stream.buffer_events; one more and it is closed
// with a reason (the client resumes from its last cursor), so it never slows the others.
//
// The per-tenant connection limit counts every replica's streams (StreamLeases: leases in Redis
// that a dead replica's streams stop refreshing), falling back to this process's own count while
// Redis is unreachable.
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"
#include "switchboard/producers/event_cursor.hpp"

namespace sb {

struct StreamFilter {
  std::vector<std::string> types;     // webhook-style patterns (message.sent, message.*, *); empty: all
  std::vector<std::string> sessions;  // session names; empty: all (and events without a session)
  bool matches(const std::string& type, const std::string* session) const;
};

enum class StreamFormat { sse, websocket };

struct Subscription {
  std::string tenant;
  StreamFilter filter;
  StreamFormat format = StreamFormat::sse;
  std::optional<EventCursor> after;  // resume after this event; none: live from now
};

// Why a subscription is refused, as the HTTP answer to give.
struct StreamRefusal {
  int status;
  std::string error;
  std::string field;                                  // which input, when one is to blame
  std::vector<std::pair<std::string, std::string>> extra;  // more JSON fields (oldest_cursor…)
};

struct FeedStats {
  uint64_t open_streams = 0;
  uint64_t events_read = 0;        // live records read from sb.events
  uint64_t events_delivered = 0;   // messages queued to streams (live + replayed)
  uint64_t events_replayed = 0;
  uint64_t overflows = 0;          // streams closed for a full buffer
  uint64_t foreign_records = 0;    // records whose key and tenant field disagree (never delivered)
  uint64_t lease_fallbacks = 0;    // admissions Redis could not decide (per-process limit only)
};

// The librdkafka properties of the feed's readers (live: from the end; replay: from a cursor,
// reporting partition ends), beside the cluster's own (kafka.*). bench_stream reads sb.events
// with the live ones too, to tell Kafka's share of the latency from the stream's.
std::map<std::string, std::string> event_reader_properties(const Config& config, const std::string& role, bool replay);

class EventFeed {
 public:
  // Starts the live reader (it finds sb.events' partitions and their ends in the background;
  // until then admit() answers 503) and the replay reader. Never blocks on the broker.
  explicit EventFeed(const Config& config);
  ~EventFeed();  // stops both readers; open streams are closed by the HTTP server's stop()
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // A place for one more stream of a tenant, held until the stream is attached (or dropped).
  class Admission {
   public:
    Admission(Admission&&) noexcept;
    Admission& operator=(Admission&&) = delete;
    ~Admission();  // frees the place unless attach() took it

   private:
    friend class EventFeed;
    Admission(EventFeed* feed, Subscription sub, int32_t partition, std::string lease);
    EventFeed* feed_;
    Subscription sub_;
    int32_t partition_;
    std::string lease_;  // the stream's place in the tenant's cluster-wide count (StreamLeases)
  };

  // Checks a subscription: the feed is ready, the cursor is one of this tenant's and still
  // within retention, the tenant is under its connection limit across replicas (a lease in
  // Redis; per process while Redis is unreachable). Blocks on the broker (the partition's
  // watermarks, bounded by 5 s) when a cursor is given and on Redis (redis.timeout_ms): call it
  // off the IO threads.
  std::variant<StreamRefusal, Admission> admit(Subscription sub);
  // Starts delivering to the stream: an opening message, the replay when resuming, then live.
  void attach(Admission admission, const std::shared_ptr<http::Stream>& stream);

  FeedStats stats() const;
  bool ready() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb
