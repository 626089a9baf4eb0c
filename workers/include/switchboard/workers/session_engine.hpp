#pragma once
// The per-session actors of a worker. Each session a worker holds work for is a small record:
// a FIFO of pending jobs, a busy flag and the earliest time it may start its next job. A
// session's jobs run one at a time and in order; different sessions run concurrently, up to
// max_in_flight jobs started and not yet done across the process (the rest wait their turn in
// arrival order). A session that must wait (pacing, a back-off) arms one timer on the event
// loop and costs nothing else: no thread, no poll.
//
// Loop thread only: every method must run on the EventLoop given at construction.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "switchboard/core/kafka.hpp"
#include "switchboard/workers/event_loop.hpp"

namespace sb {

// What the engine needs of a job: which session it belongs to and which partition it came from.
struct EngineJob {
  virtual ~EngineJob() = default;
  std::string session_key;          // "tenant/session"
  kafka::TopicPartition source;
  uint64_t epoch = 0;
  // A control command of its session (lifecycle): it runs ahead of a job held waiting for the
  // session to work (hold_until), which would otherwise keep it queued for as long as the hold
  // lasts — a start behind the sends waiting for it.
  bool overtakes_held = false;
  std::shared_ptr<EngineJob> next;  // the session's FIFO (intrusive: an idle session holds no container)
};
using EngineJobPtr = std::shared_ptr<EngineJob>;

class SessionEngine {
 public:
  using Clock = EventLoop::Clock;
  // Called when a job may run (its session is then busy, one in-flight slot taken). The
  // runner must eventually call done() or retry_at() for it, on the loop thread.
  using Start = std::function<void(const EngineJobPtr&)>;

  SessionEngine(EventLoop& loop, std::size_t max_in_flight, Start start);

  void submit(EngineJobPtr job);
  // The running job of its session is over: the slot is freed and the session's next job may
  // start at `next_not_before` (pacing) or at once.
  void done(const EngineJobPtr& job, Clock::time_point next_not_before = {});
  // The running job can't proceed yet (pacing wait, back-off): it stays at the head of its
  // session, the slot is freed, and it is started again at `when`.
  void retry_at(const EngineJobPtr& job, Clock::time_point when);
  // As retry_at, for a job that waits for its session's state to change (not WORKING): a job
  // with overtakes_held queued behind it, or submitted while it waits, runs first; the held job
  // is started again right after that one is done.
  void hold_until(const EngineJobPtr& job, Clock::time_point when);
  // Removes jobs not started (or waiting on a retry) of `partitions` and returns them. Jobs
  // running now are left to finish.
  std::vector<EngineJobPtr> drop(const std::vector<kafka::TopicPartition>& partitions);

  std::size_t sessions() const { return sessions_.size(); }
  std::size_t queued() const { return queued_; }   // submitted, not started (waiting included)
  std::size_t in_flight() const { return in_flight_; }

 private:
  struct Session {
    EngineJobPtr head, tail;         // FIFO; head is the running job while busy
    Clock::time_point not_before{};  // pacing / back-off: no start before this
    uint32_t timer_gen = 0;          // a newer timer supersedes older ones
    bool busy = false;
    bool waiting_turn = false;       // in ready_ (an in-flight slot is awaited)
    bool timer_armed = false;
    bool head_held = false;          // the head waits in hold_until
    uint32_t overtakers = 0;         // queued jobs behind the head with overtakes_held
  };
  void overtake(const std::string& key, Session& s, EngineJobPtr job);
  void try_start(const std::string& key, Session& s);
  void start_head(const std::string& key, Session& s);
  void arm(const std::string& key, Session& s, Clock::time_point when);
  void release_slot();
  void maybe_forget(const std::string& key);

  EventLoop& loop_;
  std::size_t max_in_flight_;
  Start start_;
  std::unordered_map<std::string, Session> sessions_;
  std::deque<std::string> ready_;  // sessions waiting for a free slot, oldest first
  std::size_t queued_ = 0;
  std::size_t in_flight_ = 0;
};

}  // namespace sb
