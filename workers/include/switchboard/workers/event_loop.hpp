#pragma once
// One thread that runs posted tasks and timers in order. The session engine lives on it, so
// session state needs no locks: every other thread (poll loop, HTTP callbacks, the database
// batcher) hands its results over with post(). A pending timer costs one heap entry (~48 B),
// not a thread, so 100,000 paced sessions cost memory only.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace sb {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using Task = std::function<void()>;

  EventLoop();
  // Stops the thread; tasks and timers not yet run are dropped.
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Thread-safe. Runs `task` on the loop thread, after the tasks posted before it. False (and
  // dropped) once the loop is stopping.
  bool post(Task task);
  // Thread-safe. Runs `task` on the loop thread at `when` (or soon after).
  void post_at(Clock::time_point when, Task task);
  // Runs `task` on the loop thread and waits for it (never call from the loop thread). False
  // when the loop is stopping (the task did not run).
  bool run_sync(const Task& task);
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  std::size_t timers() const;  // pending timers

 private:
  struct Timer {
    Clock::time_point at;
    uint64_t seq;
    Task task;
    bool operator>(const Timer& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace sb
