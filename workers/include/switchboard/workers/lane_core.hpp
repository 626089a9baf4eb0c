#pragma once
// What a lane worker does with its records, without Kafka, PostgreSQL or HTTP of its own: all
// of those come in through the small interfaces below, so the whole flow is unit-tested with
// fakes and integration-tested with the real ones (lane_worker.hpp wires those).
//
//   poll batch ─▶ parse + validate (bad → sb.dlq) ─▶ SessionEngine (per-session FIFO, pacing)
//     ─▶ [pacer] ─▶ ledger.claim (batched durable "sending" mark; replays answered here)
//     ─▶ provider.send (async) ─▶ ledger.record (batched) ─▶ event on sb.events ─▶ finished
//
// A session's next command starts once the provider answered its previous one; recording and
// publishing trail behind without holding the session. Every record ends finished (outcome
// durable and evented, or dead-lettered) or released (revoked before it started): none hangs.
// Loop thread: everything but on_records / on_revoking (the poll thread's calls) runs on the
// EventLoop, so no state here needs a lock.
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>

#include "switchboard/core/command.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/message_store.hpp"
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/core/schema.hpp"
#include "switchboard/workers/event_loop.hpp"
#include "switchboard/workers/partitioned_consumer.hpp"
#include "switchboard/workers/provider.hpp"
#include "switchboard/workers/session_engine.hpp"

namespace sb {

// The durable side (PostgreSQL, batched). Callbacks run on any thread, exactly once. The
// ledger retries a dependency outage itself; an error handed back is poison (this command
// can't be claimed/recorded as it is).
class CommandLedger {
 public:
  using Claimed = std::function<void(SendClaim, std::exception_ptr)>;
  using Recorded = std::function<void(std::exception_ptr)>;
  // Recording an outcome stores it (or finds it stored already: a retried write that had
  // committed), or finds the message concluded otherwise by another owner — a zombie whose
  // call ended after its partition moved and the next owner reconciled. Superseded: the
  // stored outcome stands and was evented by its owner; this one must not be published.
  struct RecordResult {
    bool superseded = false;
    std::string stored_status;  // superseded only
  };
  using OutcomeRecorded = std::function<void(RecordResult, std::exception_ptr)>;
  virtual ~CommandLedger() = default;
  virtual void claim(const SendCommand& command, Claimed done) = 0;
  virtual void record(const MessageOutcome& outcome, OutcomeRecorded done) = 0;
  // Takes our 'sending' marks back (to 'queued') for commands given up before any request
  // reached the provider, so their next owner sends them instead of failing them as uncertain.
  virtual void unclaim(const std::vector<std::string>& message_ids, Recorded done) = 0;
};

// The Kafka side: events, dead letters and offsets. Thread-safe.
class LaneSink {
 public:
  virtual ~LaneSink() = default;
  // Acked once Kafka has it; failed (once) when Kafka refuses it for good.
  virtual void publish_event(const MessageOutcome& outcome, std::function<void()> acked,
                             std::function<void(const Error&)> failed) = 0;
  // Any other event (session.status …), already built.
  virtual void publish_json(const nlohmann::json& event, std::function<void()> acked,
                            std::function<void(const Error&)> failed) = 0;
  virtual void dead_letter(const ConsumedRecord& record, const std::string& reason, const std::string& detail,
                           std::function<void()> acked) = 0;
  virtual void finished(const ConsumedRecord& record) = 0;
  virtual void released(const kafka::TopicPartition& tp, uint64_t epoch, std::size_t n) = 0;
};

// Session lifecycle (start, stop, restart, logout, delete) against the session's provider,
// with its status recorded; also pauses a session a provider flagged. `done` runs once, on
// any thread, with the events to publish (session.status …) or an error (retryable → the
// command is tried again after a back-off; otherwise it is dead-lettered).
class SessionControl {
 public:
  using Done = std::function<void(std::vector<nlohmann::json> events, std::exception_ptr error)>;
  virtual ~SessionControl() = default;
  virtual void execute(const SessionCommand& command, Done done) = 0;
  virtual void pause(const std::string& tenant, const std::string& session, const std::string& reason, Done done) = 0;
};

// Per-session send pacing shared across replicas (Redis). done(wait, error): wait 0 means a
// send slot (to recipient `to`) is reserved now; otherwise ask again after `wait`.
class Pacer {
 public:
  using Done = std::function<void(std::chrono::milliseconds wait, std::exception_ptr error)>;
  virtual ~Pacer() = default;
  virtual void reserve(const std::string& tenant, const std::string& session, const std::string& to, Done done) = 0;
  // The provider throttled the session (429): every replica's sends of it wait at least `wait`.
  virtual void backoff(const std::string& /*tenant*/, const std::string& /*session*/, std::chrono::milliseconds /*wait*/) {}
};

struct LaneStats {
  std::atomic<uint64_t> received{0}, sent{0}, failed{0}, uncertain{0}, reconciled{0}, replayed{0},
      dead_lettered{0}, released{0}, provider_retries{0}, dependency_retries{0}, held{0}, lifecycle{0}, paused{0},
      superseded{0};
};

class LaneCore : public RecordHandler {
 public:
  enum class OnUncertain { Fail, Resend };
  struct Options {
    std::string lane = "default";
    std::size_t max_in_flight = 1000;
    RetryPolicy provider_retry{RetryPolicy::Options{std::chrono::milliseconds(200), std::chrono::milliseconds(5000), 2.0, 0.2, 3}};
    RetryPolicy dependency_retry{RetryPolicy::Options{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 2.0, 0.2, 0}};
    OnUncertain on_uncertain = OnUncertain::Fail;
    // A send to a session that is not WORKING waits (looking again every hold_poll) up to
    // hold_max, then fails with reason session_not_working; hold_max 0 fails at once.
    std::chrono::milliseconds hold_poll{1000};
    std::chrono::seconds hold_max{300};
    // A provider's "not sent" for an interrupted send is trusted only once the earlier owner's
    // 'sending' mark is this old: until then that owner — paused, not dead — may still have its
    // request held by the provider (chaos harness: a SIGSTOPped worker's call held by a hanging
    // provider; the next owner's lookup said "not sent", its resend made 48 messages twice).
    // Younger marks are looked up again when they reach this age.
    std::chrono::milliseconds reconcile_trust_after{10000};
  };

  // Every reference must outlive this object, and `loop` must be stopped before it dies
  // (declare the loop after the core: its tasks reach the core).
  LaneCore(Options options, EventLoop& loop, const SchemaSet& schemas, CommandLedger& ledger, Provider& provider,
           LaneSink& sink, Pacer* pacer = nullptr);

  // RecordHandler (poll thread).
  void on_records(std::vector<ConsumedRecord> records) override;
  void on_revoking(const std::vector<kafka::TopicPartition>& partitions) override;

  // Before the first record: pacing on (a Pacer that outlives this object).
  void set_pacer(Pacer* pacer) { pacer_ = pacer; }
  // Before the first record: lifecycle commands run here (without one they are dead-lettered).
  void set_session_control(SessionControl* control) { control_ = control; }
  const LaneStats& stats() const { return stats_; }
  // Loop-thread figures, read through the loop (safe from any thread; blocks briefly).
  struct Load {
    std::size_t sessions = 0, queued = 0, in_flight = 0, settling = 0;
  };
  Load load();

 private:
  struct Job;
  using JobPtr = std::shared_ptr<Job>;

  void start(const JobPtr& j);
  void run_lifecycle(const JobPtr& j);
  void on_lifecycle_done(const JobPtr& j, std::vector<nlohmann::json> events, std::exception_ptr err);
  void publish_events(const JobPtr& j, std::vector<nlohmann::json> events);
  void hold_or_fail(const JobPtr& j, const SendClaim& c);
  void pace(const JobPtr& j);
  void claim(const JobPtr& j);
  void on_claimed(const JobPtr& j, const SendClaim& c, std::exception_ptr err);
  void send(const JobPtr& j);
  void on_sent(const JobPtr& j, const SendResult& r);
  void pause_session(const JobPtr& j, const std::string& reason, MessageOutcome failed);
  // A send certainly not sent whose placement may have changed: back to its claim (true), or
  // false when it has waited sessions.hold_max already.
  bool reroute(const JobPtr& j, const SendResult& r);
  void reconcile(const JobPtr& j, const std::string& why);
  void on_reconciled(const JobPtr& j, const ReconcileResult& r, const std::string& why);
  void conclude(const JobPtr& j, MessageOutcome o);
  void on_recorded(const JobPtr& j, const MessageOutcome& o, const CommandLedger::RecordResult& r, std::exception_ptr err);
  void publish(std::vector<ConsumedRecord> records, const MessageOutcome& o);
  void republish(const JobPtr& j, const MessageOutcome& o);
  void skip_unreleased(const JobPtr& j, const std::string& status);  // scheduled_store.hpp
  void dead_letter(const JobPtr& j, const std::string& reason, const std::string& detail);
  void dependency_failed(const JobPtr& j, std::exception_ptr err, const char* step);
  bool live(const Job& j) const;
  void release(const JobPtr& j);
  // The ids among `jobs` whose 'sending' mark is ours and no request of theirs is out.
  static std::vector<std::string> marks_to_return(const std::vector<JobPtr>& jobs);
  static std::string failure_reason_of(const std::string& error);
  MessageOutcome outcome_of(const Job& j, std::string status) const;
  SendRequest request_of(const Job& j) const;
  // Posts `fn` to the loop from another thread's callback.
  template <typename F>
  void later(F fn) {
    loop_.post(std::move(fn));
  }

  Options options_;
  EventLoop& loop_;
  const SchemaSet& schemas_;
  CommandLedger& ledger_;
  Provider& provider_;
  LaneSink& sink_;
  Pacer* pacer_;
  SessionControl* control_ = nullptr;
  LaneStats stats_;
  std::mt19937_64 rng_{std::random_device{}()};
  // Loop thread only.
  std::map<kafka::TopicPartition, uint64_t> live_;  // partitions owned now, with their epoch
  // Outcomes the provider gave that are not yet recorded: a duplicate record of the same
  // message (intake republishes on an idempotent retry) is answered from here, not from the
  // database's 'sending' mark (which would look like a crash and fail it as uncertain).
  // They finish with the original, once its outcome is durable and evented.
  struct Settling {
    MessageOutcome outcome;
    std::vector<ConsumedRecord> duplicates;
  };
  std::unordered_map<std::string, Settling> settling_;
  SessionEngine engine_;
};

}  // namespace sb
