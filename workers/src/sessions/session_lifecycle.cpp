#include "switchboard/workers/sessions/session_lifecycle.hpp"

#include "switchboard/core/events.hpp"
#include "switchboard/core/http_client.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/workers/providers/engine_client.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/workers/providers/http_outcome.hpp"

namespace sb {

using json = nlohmann::json;

SessionLifecycle::SessionLifecycle(const Config& config, pg::Pool& pool)
    : config_(config),
      store_(pool),
      pacing_(pool),
      secrets_(config.secrets.key),
      nodes_(pool, config.engine, SecretBox(config.secrets.key)),
      placement_(pool),
      thread_([this] { loop(); }) {
  try {
    nodes_.register_config_nodes();
  } catch (const Error& e) {
    log::warn("session.config_nodes_not_registered", {{"detail", e.what()}});  // another role does it
  }
}

SessionLifecycle::~SessionLifecycle() {
  stopper_.request_stop();
  cv_.notify_all();
  thread_.join();
}

void SessionLifecycle::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void SessionLifecycle::loop() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopper_.stopping() || !tasks_.empty(); });
      if (stopper_.stopping()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void SessionLifecycle::execute(const SessionCommand& command, Done done) {
  post([this, command, done = std::move(done)] {
    std::vector<json> events;
    std::exception_ptr err;
    try {
      events = run(command);
    } catch (const StalePlacement& e) {
      // This worker's view of the placement is older than the node's: the placer moved the
      // session meanwhile. Nothing changes; the mover starts it where it is now.
      log::warn("session.command_stale", {{"tenant", command.tenant}, {"session", command.session},
                                          {"action", command.action}, {"detail", e.what()}});
    } catch (const ProviderRefused& e) {
      // The provider said no (bad credentials, refused request): the session is FAILED with
      // the provider's words as the reason, and the command is done — retrying can't help.
      log::warn("session.command_refused", {{"tenant", command.tenant}, {"session", command.session},
                                            {"action", command.action}, {"detail", e.what()}});
      try {
        if (auto s = store_.get(command.tenant, command.session)) record(events, *s, "FAILED", std::string(e.what()));
      } catch (...) {
        err = std::current_exception();
      }
    } catch (...) {
      err = std::current_exception();
    }
    done(std::move(events), err);
  });
}

void SessionLifecycle::pause(const std::string& tenant, const std::string& session, const std::string& reason, Done done) {
  post([this, tenant, session, reason, done = std::move(done)] {
    std::vector<json> events;
    std::exception_ptr err;
    try {
      if (auto s = store_.get(tenant, session)) {
        // PAUSED, not FAILED: the pairing is fine, the number must rest. Resumed by a worker's
        // sweep once the cool-down has passed (SessionResumer), or by POST …/resume.
        auto found = pacing_.load(std::vector<PacingStore::Key>{PacingStore::Key{tenant, session}});
        const auto policy = found.empty() ? PacingPolicy::from_config(config_.pacing)
                                          : found.begin()->second.effective(PacingPolicy::from_config(config_.pacing));
        log::warn("session.paused", {{"tenant", tenant}, {"session", session}, {"reason", reason},
                                     {"cool_down_s", std::to_string(policy.cool_down_s)}});
        record(events, *s, "PAUSED", reason);
        if (policy.cool_down_s > 0) {
          const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count() + int64_t{policy.cool_down_s} * 1000;
          pacing_.set_paused_until(tenant, session, until);
          if (auto at = pacing_.paused_until(tenant, session))
            for (auto& e : events) e["data"]["paused_until"] = *at;
        }
      }
    } catch (...) {
      err = std::current_exception();
    }
    done(std::move(events), err);
  });
}

void SessionLifecycle::record(std::vector<json>& events, const SessionRecord& s, const std::string& status,
                              const std::optional<std::string>& reason, const std::optional<std::string>& account,
                              bool clear_account, const std::string& at) {
  const std::string our = normalize_session_status(status);
  SessionStatusChange change{our, our == status ? std::nullopt : std::optional<std::string>(status), reason,
                             at.empty() ? now_rfc3339() : at};
  // Engine sessions: fenced by the generation this command ran with.
  auto applied = store_.set_status(s.tenant_id, s.name, change, account, clear_account,
                                   s.provider == "engine" ? std::optional<int64_t>(s.generation) : std::nullopt);
  if (applied.stale)
    log::warn("session.status_stale", {{"tenant", s.tenant_id}, {"session", s.name}, {"status", our},
                                       {"generation", std::to_string(s.generation)}});
  if (!applied.previous) return;  // nothing changed (same status), or not ours to change: no event
  log::info("session.status", {{"tenant", s.tenant_id}, {"session", s.name}, {"status", our},
                               {"previous", *applied.previous}, {"reason", reason.value_or("")}});
  events.push_back(session_status_event(s.tenant_id, s.name, our, applied.previous, reason, change.raw_status,
                                        clear_account ? std::nullopt : (account ? account : s.account), change.at));
}

std::vector<json> SessionLifecycle::removed(const SessionRecord& s, const SessionCommand& c) {
  store_.remove(s.tenant_id, s.name);
  log::info("session.deleted", {{"tenant", s.tenant_id}, {"session", s.name}});
  return {make_event("session.deleted", s.tenant_id, s.name, now_rfc3339(), json::object(),
                     s.tenant_id + "/" + s.name + "/deleted/" + c.id)};
}

std::vector<json> SessionLifecycle::run(const SessionCommand& c) {
  std::vector<json> events;
  auto s = store_.get(c.tenant, c.session);
  if (!s) {
    log::info("session.command_skipped", {{"tenant", c.tenant}, {"session", c.session}, {"action", c.action},
                                          {"detail", "no such session (deleted)"}});
    return events;
  }
  if (s->deleting && c.action != "delete") return events;  // a delete is on its way
  if (c.action == "resume") {  // POST /v1/sessions/{id}/resume: only a PAUSED session resumes
    if (s->status == "PAUSED") record(events, *s, "WORKING", std::string("resume requested"));
    else log::info("session.command_skipped", {{"tenant", c.tenant}, {"session", c.session}, {"action", c.action},
                                               {"detail", "not PAUSED (" + s->status + ")"}});
    return events;
  }
  const std::string why = c.action + " requested";
  // Stamped before the provider call: a status the provider reports by webhook after it is
  // newer, so this one never overwrites it (statuses apply in time order).
  const std::string at = now_rfc3339();

  if (s->provider == "engine") {
    if (c.action == "start" || c.action == "restart") {
      // A start goes to a live node with room: its node dead, draining or gone → re-placed. A
      // STOPPED or FAILED session holds no capacity slot: its start takes one, on its node if it
      // has room, else re-placed in its group (same auth storage: no new QR), else FAILED
      // no_capacity.
      auto node = s->node ? nodes_.get(*s->node) : std::nullopt;
      std::string why_moved;
      if (!node || node->draining || node->health == "dead") {
        why_moved = !s->node ? "not placed" : !node ? "node " + *s->node + " is not registered"
                    : node->draining ? "node " + *s->node + " is draining" : "node " + *s->node + " is dead";
      } else {
        const auto slot = placement_.take_slot(s->tenant_id, s->name, s->generation);
        if (slot == SessionPlacement::Slot::Stale) return events;  // moved by someone else meanwhile: their start stands
        if (slot == SessionPlacement::Slot::Full) why_moved = "node " + *s->node + " has no free capacity";
      }
      if (!why_moved.empty()) {
        try {
          auto moved = placement_.move(s->tenant_id, s->name, s->generation, c.action + " requested; " + why_moved, false, {}, {},
                                       true);
          if (!moved) return events;  // moved by someone else meanwhile: their start stands
          log::info("session.placed", {{"tenant", s->tenant_id}, {"session", s->name}, {"node", moved->to.node},
                                       {"generation", std::to_string(moved->to.generation)}, {"reason", why_moved}});
          if (node && node->health != "dead" && s->engine_name)
            if (auto old = nodes_.engine_node(node->name)) {
              // Stopped where it was (with the new generation, which fences that node) before it
              // starts on the new one: never running on two nodes.
              try {
                EngineClient(*old, config_.engine.timeout_ms, moved->to.generation).stop(*s->engine_name);
              } catch (const Error& e) {
                log::warn("session.stop_on_source_failed", {{"tenant", s->tenant_id}, {"session", s->name},
                                                            {"node", node->name}, {"detail", e.what()}});
              }
            }
          s = store_.get(c.tenant, c.session);
          if (!s) return events;
        } catch (const NoCapacity& e) {
          ++no_capacity_;
          log::warn("session.no_capacity", {{"tenant", s->tenant_id}, {"session", s->name}, {"detail", e.what()}});
          record(events, *s, "FAILED", std::string("no_capacity"), std::nullopt, false, at);
          return events;
        }
      }
    }
    auto node = nodes_.engine_node(s->node.value_or(""));
    if (!node) throw ProviderRefused("engine node '" + s->node.value_or("") + "' is not registered (switchboard nodes add, or engine.nodes)");
    EngineClient engine(*node, config_.engine.timeout_ms, s->generation);
    const std::string name = s->engine_name.value_or(engine_session_name(s->tenant_id, s->name));
    const std::string callback = config_.intake.callback_base() + "/v1/providers/engine/" + node->name + "/webhook";
    EngineClient::State st;
    if (c.action == "start") st = engine.start(name, callback, node->webhook_hmac_key, s->tenant_id, s->name);
    else if (c.action == "restart") st = engine.restart(name, callback, node->webhook_hmac_key, s->tenant_id, s->name);
    else if (c.action == "stop") st = engine.stop(name);
    else if (c.action == "logout") st = engine.logout(name);
    else if (c.action == "delete") {
      engine.remove(name);
      return removed(*s, c);
    }
    if (st.status.empty()) st.status = (c.action == "stop" || c.action == "logout") ? "STOPPED" : "STARTING";
    record(events, *s, st.status, why, st.account, c.action == "logout", at);
    if (st.status == "SCAN_QR_CODE")
      if (auto qr = engine.qr(name)) {
        store_.set_qr(s->tenant_id, s->name, qr->value, qr->png_base64);
        events.push_back(session_qr_event(s->tenant_id, s->name, qr->value, now_rfc3339()));
      }
    return events;
  }

  if (c.action == "delete") return removed(*s, c);
  if (c.action == "stop" || c.action == "logout") {
    record(events, *s, "STOPPED", why, std::nullopt, c.action == "logout", at);
    return events;
  }
  // start / restart
  if (s->provider == "cloud_api") {
    std::string token;
    try {
      token = open_session_secrets(secrets_, s->tenant_id, s->name, s->secrets.value_or("")).value("access_token", "");
    } catch (const InvalidInput& e) {
      throw ProviderRefused(std::string("cannot open the session's credentials: ") + e.what());
    }
    if (token.empty()) throw ProviderRefused("the session has no stored access_token");
    HttpClient http(config_.cloud_api.timeout_ms, std::min(config_.cloud_api.timeout_ms, 2000));
    const std::string url = config_.cloud_api.graph_url + "/" + config_.cloud_api.version + "/" + s->phone_number_id.value_or("");
    auto r = http.request("GET", url, {}, {{"Authorization", "Bearer " + token}});
    if (!r.transport_ok()) throw Unavailable("cloud_api GET " + url + ": " + r.error);
    if (r.status == 429 || r.status >= 500) throw Unavailable("cloud_api GET " + url + ": HTTP " + std::to_string(r.status));
    if (r.status != 200)
      throw ProviderRefused("Cloud API refused the number " + s->phone_number_id.value_or("") + ": HTTP " +
                            std::to_string(r.status) + ": " + excerpt(r.body));
    std::optional<std::string> account;
    try {
      auto j = json::parse(r.body);
      std::string digits;
      for (char ch : j.value("display_phone_number", "")) if (ch >= '0' && ch <= '9') digits += ch;
      if (!digits.empty()) account = digits;
    } catch (const json::exception&) {
    }
    record(events, *s, "WORKING", why, account, false, at);
    return events;
  }
  record(events, *s, "WORKING", why, std::nullopt, false, at);  // simulator: nothing to pair
  return events;
}

}  // namespace sb
