#include "switchboard/workers/session_engine.hpp"

#include <algorithm>

namespace sb {

SessionEngine::SessionEngine(EventLoop& loop, std::size_t max_in_flight, Start start)
    : loop_(loop), max_in_flight_(std::max<std::size_t>(1, max_in_flight)), start_(std::move(start)) {}

void SessionEngine::submit(EngineJobPtr job) {
  const std::string& key = job->session_key;
  auto& s = sessions_[key];
  ++queued_;
  job->next = nullptr;
  if (s.tail) {
    if (job->overtakes_held && s.head_held && !s.busy) return overtake(key, s, std::move(job));
    if (job->overtakes_held) ++s.overtakers;
    s.tail->next = job;
    s.tail = job;
    return;  // behind the session's earlier jobs
  }
  s.head = s.tail = std::move(job);
  if (!s.busy && !s.timer_armed && !s.waiting_turn) try_start(key, s);
}

void SessionEngine::try_start(const std::string& key, Session& s) {
  if (s.not_before > Clock::now()) return arm(key, s, s.not_before);
  if (in_flight_ >= max_in_flight_) {
    if (!s.waiting_turn) {
      s.waiting_turn = true;
      ready_.push_back(key);
    }
    return;
  }
  start_head(key, s);
}

void SessionEngine::start_head(const std::string&, Session& s) {
  s.busy = true;
  s.head_held = false;
  --queued_;
  ++in_flight_;
  auto job = s.head;  // a copy: start_ may call done() before returning
  start_(job);
}

void SessionEngine::done(const EngineJobPtr& job, Clock::time_point next_not_before) {
  auto it = sessions_.find(job->session_key);
  if (it == sessions_.end() || it->second.head != job || !it->second.busy) return;  // not running: ignore
  auto& s = it->second;
  s.head = job->next;
  job->next = nullptr;
  if (!s.head) s.tail = nullptr;
  s.busy = false;
  s.not_before = next_not_before;
  const std::string key = it->first;  // the session may be erased below
  release_slot();
  auto again = sessions_.find(key);
  if (again == sessions_.end()) return;
  if (again->second.head && !again->second.busy && !again->second.timer_armed && !again->second.waiting_turn)
    try_start(key, again->second);
  else
    maybe_forget(key);
}

void SessionEngine::retry_at(const EngineJobPtr& job, Clock::time_point when) {
  auto it = sessions_.find(job->session_key);
  if (it == sessions_.end() || it->second.head != job || !it->second.busy) return;
  auto& s = it->second;
  s.busy = false;
  s.head_held = false;
  ++queued_;  // waiting again
  s.not_before = when;
  const std::string key = it->first;
  arm(key, s, when);
  release_slot();
}

void SessionEngine::hold_until(const EngineJobPtr& job, Clock::time_point when) {
  retry_at(job, when);
  auto it = sessions_.find(job->session_key);
  if (it == sessions_.end() || it->second.head != job || it->second.busy) return;
  auto& s = it->second;
  s.head_held = true;
  if (s.overtakers == 0) return;
  EngineJobPtr prev = s.head;  // the first overtaking job behind the head comes out of the FIFO
  while (prev->next && !prev->next->overtakes_held) prev = prev->next;
  if (!prev->next) {
    s.overtakers = 0;
    return;
  }
  EngineJobPtr control = prev->next;
  prev->next = control->next;
  if (s.tail == control) s.tail = prev;
  --s.overtakers;
  overtake(it->first, s, std::move(control));
}

// `job` becomes the head of a session whose head is held: it starts now (or at its turn for a
// slot), the held job right behind it.
void SessionEngine::overtake(const std::string& key, Session& s, EngineJobPtr job) {
  job->next = s.head;
  s.head = std::move(job);
  s.head_held = false;
  s.not_before = {};  // the hold's next look, not a pacing gap
  if (s.timer_armed) {
    s.timer_armed = false;
    ++s.timer_gen;  // the held job's timer is moot: it runs after this one
  }
  if (!s.waiting_turn) try_start(key, s);
}

void SessionEngine::arm(const std::string& key, Session& s, Clock::time_point when) {
  s.timer_armed = true;
  const uint32_t gen = ++s.timer_gen;
  loop_.post_at(when, [this, key, gen] {
    auto it = sessions_.find(key);
    if (it == sessions_.end() || it->second.timer_gen != gen || !it->second.timer_armed) return;  // superseded
    auto& s = it->second;
    s.timer_armed = false;
    if (s.head && !s.busy && !s.waiting_turn) try_start(key, s);
    else maybe_forget(key);
  });
}

void SessionEngine::release_slot() {
  --in_flight_;
  const auto now = Clock::now();
  while (in_flight_ < max_in_flight_ && !ready_.empty()) {
    const std::string key = std::move(ready_.front());
    ready_.pop_front();
    auto it = sessions_.find(key);
    if (it == sessions_.end()) continue;
    auto& s = it->second;
    s.waiting_turn = false;
    if (s.busy || !s.head || s.timer_armed) continue;
    if (s.not_before > now) {
      arm(key, s, s.not_before);
      continue;
    }
    start_head(key, s);
  }
}

void SessionEngine::maybe_forget(const std::string& key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  auto& s = it->second;
  if (s.busy || s.head || s.timer_armed || s.waiting_turn) return;
  // A pacing gap still to honour: remember it until then (a timer forgets it afterwards).
  if (s.not_before > Clock::now()) return arm(key, s, s.not_before);
  sessions_.erase(it);
}

std::vector<EngineJobPtr> SessionEngine::drop(const std::vector<kafka::TopicPartition>& partitions) {
  std::vector<EngineJobPtr> dropped;
  auto matches = [&](const EngineJob& j) {
    return std::find(partitions.begin(), partitions.end(), j.source) != partitions.end();
  };
  std::vector<std::string> emptied;
  for (auto& [key, s] : sessions_) {
    // The running job (busy head) is left to finish; everything queued behind it, or a head
    // waiting on a timer or a turn, of those partitions goes.
    EngineJobPtr keep_head, keep_tail;
    const EngineJobPtr old_head = s.head;
    EngineJobPtr j = s.head;
    bool first = true;
    while (j) {
      EngineJobPtr next = j->next;
      j->next = nullptr;
      const bool running = first && s.busy;
      if (!running && matches(*j)) {
        dropped.push_back(j);
        --queued_;
      } else {
        if (keep_tail) keep_tail->next = j;
        else keep_head = j;
        keep_tail = j;
      }
      first = false;
      j = std::move(next);
    }
    s.head = keep_head;
    s.tail = keep_tail;
    if (s.head != old_head) s.head_held = false;
    s.overtakers = 0;
    for (auto k = s.head ? s.head->next : nullptr; k; k = k->next)
      if (k->overtakes_held) ++s.overtakers;
    if (!s.head && !s.busy) emptied.push_back(key);
  }
  for (const auto& key : emptied) {
    auto it = sessions_.find(key);
    it->second.timer_armed = false;  // any timer of its is moot now
    it->second.waiting_turn = false;
    it->second.not_before = {};
    maybe_forget(key);
  }
  return dropped;
}

}  // namespace sb
