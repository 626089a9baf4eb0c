#include "switchboard/workers/sessions/session_resumer.hpp"

#include "switchboard/core/events.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

SessionResumer::SessionResumer(pg::Pool& pool, std::chrono::milliseconds poll, Publish publish)
    : store_(pool), poll_(poll), publish_(std::move(publish)), thread_([this] { loop(); }) {}

SessionResumer::~SessionResumer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SessionResumer::loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, poll_, [&] { return stopping_; })) {
    lock.unlock();
    try {
      for (const auto& r : store_.resume_due(100)) {
        ++resumed_;
        log::info("session.resumed", {{"tenant", r.tenant_id}, {"session", r.name}, {"reason", "cool_down_elapsed"}});
        publish_(session_status_event(r.tenant_id, r.name, "WORKING", std::string("PAUSED"), std::string("cool_down_elapsed"),
                                      std::nullopt, r.account, r.at));
      }
    } catch (const std::exception& e) {
      log::warn("session.resume_sweep_failed", {{"detail", e.what()}});  // PostgreSQL away: next poll
    }
    lock.lock();
  }
}

}  // namespace sb
