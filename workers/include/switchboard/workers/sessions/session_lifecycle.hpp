#pragma once
// Runs session lifecycle commands (session.start|stop|restart|logout|delete) against the
// session's provider and records what follows (status + history in PostgreSQL), answering
// with the session.status / session.qr / session.deleted events to publish:
//   engine     the node's REST API (EngineClient), called with the placement's generation; a
//              start whose node is dead, draining or gone re-places the session first (no room:
//              FAILED reason no_capacity); later statuses arrive by webhook
//   cloud_api  start checks the number and token (GET /{version}/{phone_number_id}) → WORKING
//   simulator  no pairing: start → WORKING, stop/logout → STOPPED
// Lifecycle commands are few: they run one at a time on this object's own thread (blocking
// PostgreSQL and HTTP there), never on the lane's event loop.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/retry_policy.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/core/secret_box.hpp"
#include "switchboard/core/pacing_store.hpp"
#include "switchboard/core/session_store.hpp"
#include "switchboard/workers/lane_core.hpp"

namespace sb {

class SessionLifecycle : public SessionControl {
 public:
  SessionLifecycle(const Config& config, pg::Pool& pool);
  ~SessionLifecycle() override;  // tasks not run yet are dropped (their records are redone)

  void execute(const SessionCommand& command, Done done) override;
  void pause(const std::string& tenant, const std::string& session, const std::string& reason, Done done) override;

 private:
  std::vector<nlohmann::json> run(const SessionCommand& command);
  // Removes the row (the provider side is gone); the session.deleted event.
  std::vector<nlohmann::json> removed(const SessionRecord& s, const SessionCommand& c);
  // Records a status; the session.status event when it changed anything.
  void record(std::vector<nlohmann::json>& events, const SessionRecord& s, const std::string& status,
              const std::optional<std::string>& reason, const std::optional<std::string>& account = std::nullopt,
              bool clear_account = false, const std::string& at = {});
  void post(std::function<void()> task);
  void loop();

  const Config& config_;
  SessionStore store_;
  PacingStore pacing_;  // pause cool-downs
  SecretBox secrets_;
  NodeRegistry nodes_;
  SessionPlacement placement_;
  std::atomic<uint64_t> no_capacity_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  Stopper stopper_;
  std::thread thread_;  // last: it runs tasks that reach everything above
};

}  // namespace sb
