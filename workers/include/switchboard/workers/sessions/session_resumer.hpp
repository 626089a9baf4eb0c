#pragma once
// Resumes PAUSED sessions whose cool-down has passed (sessions.paused_until, set when a provider
// flagged the sender): every pacing.resume_poll_ms one statement moves the due ones back to
// WORKING and their session.status events are published. Every lane worker runs one; the
// statement skips rows another worker holds, so each session is resumed (and evented) once.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "switchboard/core/pacing_store.hpp"

namespace sb {

class SessionResumer {
 public:
  using Publish = std::function<void(const nlohmann::json& event)>;
  SessionResumer(pg::Pool& pool, std::chrono::milliseconds poll, Publish publish);
  ~SessionResumer();
  std::size_t resumed() const { return resumed_; }

 private:
  void loop();

  PacingStore store_;
  std::chrono::milliseconds poll_;
  Publish publish_;
  std::atomic<std::size_t> resumed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;  // last
};

}  // namespace sb
