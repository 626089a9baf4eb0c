#pragma once
// `switchboard placer`: keeps engine sessions on live nodes (core/node_registry.hpp).
//   health    every node's GET /api/sessions each placer.probe_interval_ms; failure_threshold
//             failures in a row → dead; an answer → healthy (a revived node's sessions that are
//             placed elsewhere now are stopped there: reconcile runs on every answer)
//   failover  a dead node's WORKING/STARTING sessions are re-placed in their storage group
//             (session.status STARTING with the reason) and started on their new node, at most
//             max_starts_per_node in flight per node, start_stagger_ms ± start_jitter apart;
//             FAILED and mid-pairing (SCAN_QR_CODE → STOPPED with the reason) are not restarted;
//             no room → FAILED reason no_capacity
//   drain     a draining node's sessions move off one at a time per target node, each stopped
//             on the source before it starts on the target; once empty the node is `drained`
//
// Several replicas may run; one acts: the holder of the `placer_lease` row in PostgreSQL. Why a
// PostgreSQL lease rather than a one-partition Kafka consumer group: what it protects — the
// session → node map and the move intents — lives in PostgreSQL, and every placer write checks
// the lease (holder and epoch, row locked) in the same transaction, so a paused leader that
// wakes after losing it cannot write a thing; a consumer group's assignment can't fence a
// database write. Each move is an intent row written with the new placement; a new leader
// finishes the intents it finds, so a placer killed mid-move leaves every session with exactly
// one owner (its row's node) and a generation that fences the old one.
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/kafka_publisher.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/session_store.hpp"

namespace sb {

class OpsServer;

// The lease is gone (expired and taken, or never held): the write it guarded was refused.
struct LeaseLost : Error {
  explicit LeaseLost(const std::string& m) : Error(ErrorKind::Conflict, m) {}
};

// The placer's fence: passes inside `tx` only while `holder` holds the lease with `epoch` (the
// row is share-locked to the commit, so the lease can't change hands under the write); throws
// LeaseLost otherwise. Every placer write runs it first.
void check_placer_lease(pqxx::work& tx, const std::string& holder, int64_t epoch);

struct PlacerStats {
  std::atomic<uint64_t> probes{0}, probe_failures{0}, nodes_dead{0}, moves{0}, starts{0}, stale_refused{0},
      no_capacity{0}, stopped_elsewhere{0}, leader_terms{0};
  std::atomic<bool> leader{false};
};

class Placer {
 public:
  explicit Placer(const Config& config);
  ~Placer();
  void run(const std::atomic<bool>& stop);
  const PlacerStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  // A session to (re)start on its new node, in the order planned.
  struct Start {
    std::string tenant, session, engine_name, from, to, reason;
    int64_t generation = 0;
    bool stop_source = false;  // drain: stop on `from` first (it is alive)
    bool start = true;         // false: a stopped session, only its placement moved
  };
  struct InFlight {
    Clock::time_point deadline;
    bool drain = false;
  };
  struct NodeQueue {
    std::deque<Start> pending;
    std::map<std::string, InFlight> in_flight;  // "tenant/session" → until it leaves STARTING
    Clock::time_point next_at{};
    int drain_in_flight = 0;
  };

  bool hold_lease();
  void renew_lease_if_due();
  // While a long round of moves runs (a dead node's every session, each its own transaction):
  // lease renewal, settling and starting what is planned, so each session starts as soon as its
  // placement commits, within the same per-node concurrency and stagger.
  void keep_starting();
  void fence(pqxx::work& tx);
  void step_down(const std::string& why);
  void became_leader();
  void probe_all();
  void reconcile(const NodeInfo& node, const std::vector<std::string>& running);
  void fail_over(const std::string& dead);
  void drain(const NodeInfo& node);
  void enqueue(const Start& s);
  void pump();
  void settle_in_flight();
  void run_start(const Start& s, NodeQueue& q);
  void finish_intent(const Start& s);
  void publish_status(const std::string& tenant, const std::string& session, const std::string& status,
                      const std::optional<std::string>& previous, const std::string& reason);
  // Records a status change (fenced by generation) and publishes it.
  void set_status(const std::string& tenant, const std::string& session, int64_t generation, const std::string& status,
                  const std::string& reason);
  bool queued(const std::string& key) const;
  std::chrono::milliseconds stagger();

  const Config& config_;
  const std::string id_;  // this replica's name in the lease
  pg::Pool pool_;
  NodeRegistry nodes_;
  SessionPlacement placement_;
  SessionStore sessions_;
  kafka::Producer producer_;
  kafka::ReliablePublisher publisher_;
  PlacerStats stats_;
  std::mt19937_64 rng_{std::random_device{}()};
  int64_t epoch_ = 0;  // of the lease we hold (0: none)
  // Acting (engine calls) stops here unless renewed: a replica paused past it (SIGSTOP, a long
  // GC-like stall) re-checks PostgreSQL before touching anything.
  Clock::time_point lease_until_{};
  Clock::time_point next_lease_{}, next_settle_{};
  std::map<std::string, NodeQueue> queues_;  // by target node
  std::set<std::string> queued_;             // "tenant/session" of every pending or in-flight start
  std::map<std::string, bool> drained_reported_;
  std::unique_ptr<OpsServer> ops_;  // last: its handlers read the stats above
};

}  // namespace sb
