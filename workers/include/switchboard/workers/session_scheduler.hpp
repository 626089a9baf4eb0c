#pragma once
// Per-session FIFO over a shared pool of executors: a session's jobs run one at a time and in
// order; different sessions run concurrently (bounded by the number of executor threads calling
// next()). Sessions take turns (round robin), so one busy session can't starve the others.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace sb {

template <typename Job>
class SessionScheduler {
 public:
  void enqueue(const std::string& session_key, Job job) {
    std::lock_guard lock(mu_);
    auto& s = sessions_[session_key];
    s.jobs.push_back(std::move(job));
    ++buffered_;
    if (!s.busy && s.jobs.size() == 1) {
      ready_.push_back(session_key);
      cv_.notify_one();
    }
  }

  // Blocks until a job is runnable (its session is then busy until finish()) or stop().
  std::optional<std::pair<std::string, Job>> next() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stopped_ || !ready_.empty(); });
      if (stopped_) return std::nullopt;
      auto key = std::move(ready_.front());
      ready_.pop_front();
      auto it = sessions_.find(key);
      if (it == sessions_.end() || it->second.busy || it->second.jobs.empty()) continue;  // dropped meanwhile
      it->second.busy = true;
      Job job = std::move(it->second.jobs.front());
      it->second.jobs.pop_front();
      return std::make_pair(std::move(key), std::move(job));
    }
  }

  // The session's running job is over: its next job (if any) becomes runnable.
  void finish(const std::string& session_key) {
    std::lock_guard lock(mu_);
    --buffered_;
    auto it = sessions_.find(session_key);
    if (it == sessions_.end()) return;
    it->second.busy = false;
    if (it->second.jobs.empty()) {
      sessions_.erase(it);
    } else {
      ready_.push_back(session_key);
      cv_.notify_one();
    }
  }

  // Removes jobs not yet started that match pred (e.g. of a revoked partition). Returns how many.
  std::size_t drop_queued(const std::function<bool(const Job&)>& pred) {
    std::lock_guard lock(mu_);
    std::size_t dropped = 0;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto& jobs = it->second.jobs;
      for (auto j = jobs.begin(); j != jobs.end();) {
        if (pred(*j)) {
          j = jobs.erase(j);
          ++dropped;
        } else {
          ++j;
        }
      }
      if (jobs.empty() && !it->second.busy) it = sessions_.erase(it);
      else ++it;
    }
    buffered_ -= dropped;
    return dropped;
  }

  // Jobs queued or running.
  std::size_t buffered() const {
    std::lock_guard lock(mu_);
    return buffered_;
  }

  void stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }

 private:
  struct Session {
    std::deque<Job> jobs;
    bool busy = false;
  };
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Session> sessions_;
  std::deque<std::string> ready_;  // sessions whose head job may start now
  std::size_t buffered_ = 0;
  bool stopped_ = false;
};

}  // namespace sb
