#include "switchboard/workers/event_loop.hpp"

#include <future>

#include "switchboard/core/log.hpp"

namespace sb {

EventLoop::EventLoop() : thread_([this] { run(); }) {}

EventLoop::~EventLoop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool EventLoop::post(Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void EventLoop::post_at(Clock::time_point when, Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    timers_.push({when, seq_++, std::move(task)});
  }
  cv_.notify_one();
}

bool EventLoop::run_sync(const Task& task) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  if (!post([&task, done] {
        try {
          task();
        } catch (...) {
          done->set_value();
          throw;
        }
        done->set_value();
      }))
    return false;
  fut.wait();
  return true;
}

std::size_t EventLoop::timers() const {
  std::lock_guard lock(mu_);
  return timers_.size();
}

void EventLoop::run() {
  std::unique_lock lock(mu_);
  std::deque<Task> batch;
  while (!stopping_) {
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.top().at <= now) {
      // priority_queue::top is const: the task is moved out through a const_cast of our own entry.
      batch.push_back(std::move(const_cast<Timer&>(timers_.top()).task));
      timers_.pop();
    }
    while (!tasks_.empty()) {
      batch.push_back(std::move(tasks_.front()));
      tasks_.pop_front();
    }
    if (batch.empty()) {
      if (timers_.empty()) cv_.wait(lock);
      else cv_.wait_until(lock, timers_.top().at);
      continue;
    }
    lock.unlock();
    for (auto& t : batch) {
      try {
        t();
      } catch (const std::exception& e) {  // a task must not take the loop down with it
        log::error("event_loop.task_failed", {{"detail", e.what()}});
      }
    }
    batch.clear();
    lock.lock();
  }
}

}  // namespace sb
