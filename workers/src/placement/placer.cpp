#include "switchboard/workers/placement/placer.hpp"

#include <unistd.h>

#include <thread>

#include "switchboard/core/events.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/ops_server.hpp"
#include "switchboard/workers/providers/engine_client.hpp"

namespace sb {

using json = nlohmann::json;

namespace {

std::string replica_id() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "/" + std::to_string(getpid()) + "/" + new_uuid_v7().substr(0, 8);
}

std::string key_of(const std::string& tenant, const std::string& session) { return tenant + "/" + session; }

bool running_status(const std::string& s) { return s == "WORKING" || s == "STARTING" || s == "SCAN_QR_CODE"; }

}  // namespace

Placer::Placer(const Config& config)
    : config_(config),
      id_(replica_id()),
      pool_(config.postgres),
      nodes_(pool_, config.engine, SecretBox(config.secrets.key)),
      placement_(pool_),
      sessions_(pool_),
      producer_(config.kafka),
      publisher_(producer_) {
  ops_ = std::make_unique<OpsServer>(
      config.placer.ops_listen, "placer.ops_listen", [this] { return pool_.reachable() ? std::string() : "postgres unreachable"; },
      [this] {
        auto c = [](const char* name, const char* help, double v) { return OpsServer::Metric{name, help, "counter", v, ""}; };
        return std::vector<OpsServer::Metric>{
            {"sb_placer_leader", "1 while this replica holds the placer lease.", "gauge", stats_.leader ? 1.0 : 0.0, ""},
            c("sb_placer_probes_total", "Node health probes.", stats_.probes),
            c("sb_placer_probe_failures_total", "Probes that got no answer.", stats_.probe_failures),
            c("sb_placer_nodes_dead_total", "Nodes declared dead.", stats_.nodes_dead),
            c("sb_placer_moves_total", "Sessions re-placed (failover, drain).", stats_.moves),
            c("sb_placer_starts_total", "Sessions started on their new node.", stats_.starts),
            c("sb_placer_stale_refused_total", "Engine calls refused as a stale placement.", stats_.stale_refused),
            c("sb_placement_no_capacity_total", "Sessions that found no node with room (FAILED no_capacity).", stats_.no_capacity),
            c("sb_placer_stopped_elsewhere_total", "Sessions stopped on a node they are no longer placed on.", stats_.stopped_elsewhere),
            c("sb_placer_leader_terms_total", "Times this replica became the leader.", stats_.leader_terms)};
      });
}

Placer::~Placer() = default;

// ------------------------------------------------------------------ lease

bool Placer::hold_lease() {
  const auto epoch = pool_.run([&](pqxx::connection& c) -> int64_t {
    pqxx::nontransaction tx(c);
    // Taken when free or expired; renewed when ours. A new holder gets a new epoch.
    auto r = tx.exec_params(R"SQL(
      INSERT INTO placer_lease (name, holder, epoch, expires_at) VALUES ('placer', $1, 1, now() + $2 * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET
        epoch = CASE WHEN placer_lease.holder = $1 THEN placer_lease.epoch ELSE placer_lease.epoch + 1 END,
        holder = $1, expires_at = EXCLUDED.expires_at
      WHERE placer_lease.holder = $1 OR placer_lease.expires_at <= now()
      RETURNING epoch)SQL",
                            id_, config_.placer.lease_ttl_ms);
    return r.empty() ? 0 : r[0][0].as<int64_t>();
  });
  if (epoch == 0) {
    if (epoch_ != 0) log::warn("placer.lease_lost", {{"replica", id_}, {"epoch", std::to_string(epoch_)}});
    epoch_ = 0;
    stats_.leader = false;
    return false;
  }
  lease_until_ = Clock::now() + std::chrono::milliseconds(config_.placer.lease_ttl_ms * 2 / 3);
  if (epoch != epoch_) {
    epoch_ = epoch;
    ++stats_.leader_terms;
    stats_.leader = true;
    log::info("placer.leader", {{"replica", id_}, {"epoch", std::to_string(epoch)}});
    became_leader();
  }
  return true;
}

void Placer::renew_lease_if_due() {
  const auto now = Clock::now();
  if (now < next_lease_ && (epoch_ == 0 || now < lease_until_)) return;
  if (epoch_ != 0 && now >= lease_until_ + std::chrono::milliseconds(config_.placer.lease_ttl_ms / 3))
    step_down("paused past the lease");  // it may be someone else's now: start over from PostgreSQL
  hold_lease();
  next_lease_ = now + std::chrono::milliseconds(std::max(50, config_.placer.lease_ttl_ms / 4));
}

void Placer::keep_starting() {
  renew_lease_if_due();
  if (epoch_ == 0) return;  // lost: the next fenced write says so
  const auto now = Clock::now();
  if (now >= next_settle_) {  // one query for every start in flight: not after every move
    settle_in_flight();
    next_settle_ = now + std::chrono::milliseconds(20);
  }
  pump();
}

void check_placer_lease(pqxx::work& tx, const std::string& holder, int64_t epoch) {
  auto r = tx.exec_params(
      "SELECT 1 FROM placer_lease WHERE name = 'placer' AND holder = $1 AND epoch = $2 AND expires_at > now() FOR SHARE", holder, epoch);
  if (r.empty()) throw LeaseLost("the placer lease (epoch " + std::to_string(epoch) + ") is no longer ours");
}

void Placer::fence(pqxx::work& tx) { check_placer_lease(tx, id_, epoch_); }

void Placer::step_down(const std::string& why) {
  log::warn("placer.step_down", {{"replica", id_}, {"epoch", std::to_string(epoch_)}, {"detail", why}});
  epoch_ = 0;
  stats_.leader = false;
  queues_.clear();
  queued_.clear();
}

void Placer::became_leader() {
  queues_.clear();
  queued_.clear();
  drained_reported_.clear();
  // Moves a previous leader started and did not finish: redo them (stop on the source, start on
  // the target, both idempotent) unless the session was placed anew since.
  auto rows = pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec(R"SQL(
      SELECT m.tenant_id::text, m.session, m.from_node, m.to_node, m.generation, m.reason, s.generation, s.status,
             coalesce(s.engine_name, ''), coalesce(f.health, 'dead')
      FROM session_moves m JOIN sessions s ON s.tenant_id = m.tenant_id AND s.name = m.session
      LEFT JOIN engine_nodes f ON f.name = m.from_node ORDER BY m.created_at)SQL");
  });
  int redone = 0;
  for (const auto& r : rows) {
    Start s;
    s.tenant = r[0].as<std::string>();
    s.session = r[1].as<std::string>();
    s.from = r[2].is_null() ? "" : r[2].as<std::string>();
    s.to = r[3].as<std::string>();
    s.generation = r[4].as<int64_t>();
    s.reason = r[5].as<std::string>();
    s.engine_name = r[8].as<std::string>();
    if (r[6].as<int64_t>() != s.generation) {  // superseded by a later placement
      finish_intent(s);
      continue;
    }
    s.start = running_status(r[7].as<std::string>());
    s.stop_source = !s.from.empty() && s.from != s.to && r[9].as<std::string>() != "dead";
    enqueue(s);
    ++redone;
  }
  if (redone > 0) log::info("placer.intents_recovered", {{"count", std::to_string(redone)}});
}

// ------------------------------------------------------------------ loop

void Placer::run(const std::atomic<bool>& stop) {
  log::info("placer.started", {{"replica", id_}, {"probe_interval_ms", std::to_string(config_.placer.probe_interval_ms)},
                               {"lease_ttl_ms", std::to_string(config_.placer.lease_ttl_ms)}});
  try {
    nodes_.register_config_nodes();
  } catch (const Error& e) {
    log::warn("placer.config_nodes_not_registered", {{"detail", e.what()}});
  }
  next_lease_ = Clock::now();
  auto next_probe = Clock::now();
  while (!stop) {
    try {
      renew_lease_if_due();
      const auto now = Clock::now();
      if (epoch_ != 0) {
        if (now >= next_probe) {
          next_probe = now + std::chrono::milliseconds(config_.placer.probe_interval_ms);
          probe_all();
        }
        settle_in_flight();
        pump();
      }
    } catch (const LeaseLost& e) {
      step_down(e.what());
    } catch (const std::exception& e) {
      log::warn("placer.tick_failed", {{"detail", e.what()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(epoch_ != 0 ? 10 : 100));
  }
  log::info("placer.stopped", {{"replica", id_}});
}

// ------------------------------------------------------------------ health

void Placer::probe_all() {
  for (const auto& node : nodes_.list()) {
    bool ok = false;
    std::vector<std::string> running;
    std::string detail;
    try {
      if (auto en = nodes_.engine_node(node.name)) {
        running = EngineClient(*en, config_.placer.probe_timeout_ms).running();
        ok = true;
      } else {
        detail = "no credentials for it here";
      }
    } catch (const std::exception& e) {
      detail = e.what();
    }
    ++stats_.probes;
    if (!ok) ++stats_.probe_failures;
    // Fenced: a replica that lost the lease since this round began declares no node dead.
    const auto moved_to = nodes_.record_probe(node.name, ok, config_.placer.failure_threshold, [this](pqxx::work& tx) { fence(tx); });
    if (moved_to == "dead") {
      ++stats_.nodes_dead;
      log::warn("node.dead", {{"node", node.name}, {"failures", std::to_string(config_.placer.failure_threshold)}, {"detail", detail}});
    } else if (moved_to == "healthy") {
      log::info("node.healthy", {{"node", node.name}, {"was", node.health}});
    } else if (!ok && node.health != "dead") {  // a dead node's misses are not news
      log::warn("node.probe_failed", {{"node", node.name}, {"detail", detail}});
    }
    if (ok) reconcile(node, running);
  }
  for (const auto& node : nodes_.list()) {
    if (node.health == "dead") fail_over(node.name);
    else if (node.draining) drain(node);
  }
}

void Placer::reconcile(const NodeInfo& node, const std::vector<std::string>& running) {
  if (running.empty()) return;
  // Sessions running here that are placed elsewhere now (a node back from the dead, a move the
  // source never heard of): stopped here, with the current generation (which fences this node).
  auto rows = pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params(
        "SELECT engine_name, coalesce(node, ''), generation FROM sessions WHERE engine_name = ANY($1::text[]) AND node IS DISTINCT FROM $2",
        pg::array_literal(running), node.name);
  });
  if (rows.empty()) return;
  auto en = nodes_.engine_node(node.name);
  if (!en) return;
  for (const auto& r : rows) {
    const auto name = r[0].as<std::string>();
    try {
      EngineClient(*en, config_.engine.timeout_ms, r[2].as<int64_t>()).stop(name);
      ++stats_.stopped_elsewhere;
      log::warn("session.stopped_elsewhere", {{"node", node.name}, {"engine_session", name}, {"placed_on", r[1].as<std::string>()},
                                              {"generation", std::to_string(r[2].as<int64_t>())}});
    } catch (const std::exception& e) {
      log::warn("session.stop_elsewhere_failed", {{"node", node.name}, {"engine_session", name}, {"detail", e.what()}});
    }
  }
}

// ------------------------------------------------------------------ failover and drain

void Placer::fail_over(const std::string& dead) {
  auto rows = pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params(R"SQL(
      SELECT tenant_id::text, name, status, generation, coalesce(engine_name, '') FROM sessions
      WHERE node = $1 AND provider = 'engine' AND NOT deleting AND status IN ('WORKING', 'STARTING', 'SCAN_QR_CODE')
      ORDER BY tenant_id, name)SQL",
                          dead);
  });
  const std::string reason = "node_dead: engine node " + dead + " stopped answering";
  for (const auto& r : rows) {
    const std::string tenant = r[0].as<std::string>(), session = r[1].as<std::string>(), status = r[2].as<std::string>();
    const int64_t generation = r[3].as<int64_t>();
    if (queued(key_of(tenant, session))) continue;
    if (status == "SCAN_QR_CODE") {
      // Mid-pairing: its QR died with the node. Not restarted behind the user's back.
      set_status(tenant, session, generation, "STOPPED", reason + " while the session was pairing: start it again to pair");
      continue;
    }
    try {
      auto m = placement_.move(tenant, session, generation, reason + "; restarting elsewhere in its group", true,
                               [this](pqxx::work& tx) { fence(tx); });
      if (!m) continue;
      ++stats_.moves;
      const std::string why = reason + "; restarting on " + m->to.node;
      log::info("session.moved", {{"tenant", tenant}, {"session", session}, {"from", dead}, {"to", m->to.node},
                                  {"generation", std::to_string(m->to.generation)}, {"reason", "node_dead"}});
      publish_status(tenant, session, "STARTING", m->previous_status, why);
      Start s{tenant, session, r[4].as<std::string>(), dead, m->to.node, why, m->to.generation, false, true};
      enqueue(s);
      keep_starting();  // started as soon as placed, not after the whole node is re-placed
    } catch (const NoCapacity& e) {
      ++stats_.no_capacity;
      log::warn("session.no_capacity", {{"tenant", tenant}, {"session", session}, {"from", dead}, {"detail", e.what()}});
      set_status(tenant, session, generation, "FAILED", "no_capacity");
    }
  }
}

void Placer::drain(const NodeInfo& node) {
  if (node.sessions == 0) {
    if (!drained_reported_[node.name]) {
      nodes_.mark_drained(node.name, [this](pqxx::work& tx) { fence(tx); });
      drained_reported_[node.name] = true;
      log::info("node.drained", {{"node", node.name}, {"detail", "no session is placed on it: it can be stopped or removed"}});
    }
    return;
  }
  drained_reported_[node.name] = false;
  // Targets with a drain move in flight are left alone this time: one at a time per target.
  std::vector<std::string> busy;
  for (const auto& [name, q] : queues_)
    if (q.drain_in_flight > 0) busy.push_back(name);
  auto rows = pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params(R"SQL(
      SELECT tenant_id::text, name, status, generation, coalesce(engine_name, '') FROM sessions
      WHERE node = $1 AND NOT deleting ORDER BY tenant_id, name LIMIT 1000)SQL",
                          node.name);
  });
  const std::string reason = "draining: engine node " + node.name + " is being emptied";
  for (const auto& r : rows) {
    const std::string tenant = r[0].as<std::string>(), session = r[1].as<std::string>(), status = r[2].as<std::string>();
    if (queued(key_of(tenant, session))) continue;
    std::optional<SessionPlacement::Move> m;
    try {
      m = placement_.move(tenant, session, r[3].as<int64_t>(), reason, true, [this](pqxx::work& tx) { fence(tx); }, busy);
    } catch (const NoCapacity& e) {
      if (busy.empty()) log::warn("node.drain_stalled", {{"node", node.name}, {"detail", e.what()}});
      return;  // every target is busy (or full): next round
    }
    if (!m) continue;
    ++stats_.moves;
    const bool running = running_status(status);
    log::info("session.moved", {{"tenant", tenant}, {"session", session}, {"from", node.name}, {"to", m->to.node},
                                {"generation", std::to_string(m->to.generation)}, {"reason", "drain"}});
    Start s{tenant, session, r[4].as<std::string>(), node.name, m->to.node, reason + "; moving to " + m->to.node,
            m->to.generation, true, running};
    if (running) publish_status(tenant, session, "STARTING", m->previous_status, s.reason);
    enqueue(s);
    if (running) busy.push_back(m->to.node);
  }
}

// ------------------------------------------------------------------ starts

bool Placer::queued(const std::string& key) const { return queued_.count(key) > 0; }

void Placer::enqueue(const Start& s) {
  queued_.insert(key_of(s.tenant, s.session));
  auto& q = queues_[s.to];
  if (s.stop_source && s.start) ++q.drain_in_flight;
  q.pending.push_back(s);
}

std::chrono::milliseconds Placer::stagger() {
  const double base = config_.placer.start_stagger_ms, j = config_.placer.start_jitter;
  std::uniform_real_distribution<double> d(1.0 - j, 1.0 + j);
  return std::chrono::milliseconds(static_cast<int64_t>(base * d(rng_)));
}

void Placer::pump() {
  for (auto& [node, q] : queues_) {
    while (!q.pending.empty() && static_cast<int>(q.in_flight.size()) < config_.placer.max_starts_per_node &&
           Clock::now() >= q.next_at) {
      if (Clock::now() >= lease_until_) return;  // not sure the lease still holds: renew first
      Start s = q.pending.front();
      q.pending.pop_front();
      run_start(s, q);
      if (config_.placer.start_stagger_ms > 0) q.next_at = Clock::now() + stagger();
    }
  }
}

void Placer::run_start(const Start& s, NodeQueue& q) {
  const auto key = key_of(s.tenant, s.session);
  auto done = [&] {
    queued_.erase(key);
    if (s.stop_source && s.start) --q.drain_in_flight;
  };
  // Still placed where this start was planned? (A user's delete or another move wins.)
  auto cur = sessions_.get(s.tenant, s.session);
  if (!cur || cur->generation != s.generation || cur->node.value_or("") != s.to) {
    finish_intent(s);
    return done();
  }
  try {
    if (s.stop_source && !s.engine_name.empty())
      if (auto from = nodes_.engine_node(s.from)) EngineClient(*from, config_.engine.timeout_ms, s.generation).stop(s.engine_name);
    if (s.start && !s.engine_name.empty()) {
      auto to = nodes_.engine_node(s.to);
      if (!to) throw ProviderRefused("engine node '" + s.to + "' has no credentials here");
      const std::string callback = config_.intake.callback_base() + "/v1/providers/engine/" + to->name + "/webhook";
      auto st = EngineClient(*to, config_.engine.timeout_ms, s.generation).start(s.engine_name, callback, to->webhook_hmac_key,
                                                                                 s.tenant, s.session);
      ++stats_.starts;
      log::info("session.started_on_node", {{"tenant", s.tenant}, {"session", s.session}, {"node", s.to},
                                            {"generation", std::to_string(s.generation)}, {"status", st.status}});
      if (!st.status.empty() && st.status != "STARTING") set_status(s.tenant, s.session, s.generation, st.status, s.reason);
      q.in_flight[key] = {Clock::now() + std::chrono::milliseconds(config_.placer.start_timeout_ms), s.stop_source};
      finish_intent(s);
      return;  // queued_ keeps it until it settles (settle_in_flight)
    }
    finish_intent(s);
    done();
  } catch (const StalePlacement& e) {
    ++stats_.stale_refused;
    log::warn("session.start_stale", {{"tenant", s.tenant}, {"session", s.session}, {"detail", e.what()}});
    done();
  } catch (const ProviderRefused& e) {
    log::warn("session.start_refused", {{"tenant", s.tenant}, {"session", s.session}, {"node", s.to}, {"detail", e.what()}});
    set_status(s.tenant, s.session, s.generation, "FAILED", e.what());
    finish_intent(s);
    done();
  } catch (const LeaseLost&) {
    throw;
  } catch (const Error& e) {
    // The source or target did not answer: the intent stays; tried again in a while (a target
    // that died meanwhile has its sessions re-placed by failover).
    log::warn("session.start_deferred", {{"tenant", s.tenant}, {"session", s.session}, {"node", s.to}, {"detail", e.what()}});
    q.pending.push_back(s);
    q.next_at = Clock::now() + std::chrono::milliseconds(1000);
  }
}

void Placer::settle_in_flight() {
  std::vector<std::string> keys;
  for (const auto& [node, q] : queues_)
    for (const auto& [k, f] : q.in_flight) keys.push_back(k);
  if (keys.empty()) return;
  // Settled: past STARTING (WORKING, a QR, FAILED …), placed elsewhere since, or gone.
  auto rows = pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params("SELECT tenant_id::text || '/' || name FROM sessions WHERE tenant_id::text || '/' || name = ANY($1::text[]) "
                          "AND status = 'STARTING'",
                          pg::array_literal(keys));
  });
  std::set<std::string> starting;
  for (const auto& r : rows) starting.insert(r[0].as<std::string>());
  const auto now = Clock::now();
  for (auto& [node, q] : queues_)
    for (auto it = q.in_flight.begin(); it != q.in_flight.end();) {
      const bool timed_out = now >= it->second.deadline;
      if (starting.count(it->first) && !timed_out) {
        ++it;
        continue;
      }
      if (timed_out) log::warn("session.start_slow", {{"session", it->first}, {"node", node}});
      if (it->second.drain) --q.drain_in_flight;
      queued_.erase(it->first);
      it = q.in_flight.erase(it);
    }
}

void Placer::finish_intent(const Start& s) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    fence(tx);
    tx.exec_params("DELETE FROM session_moves WHERE tenant_id = $1 AND session = $2 AND generation <= $3", s.tenant, s.session,
                   s.generation);
    tx.commit();
  });
}

// ------------------------------------------------------------------ statuses

void Placer::publish_status(const std::string& tenant, const std::string& session, const std::string& status,
                            const std::optional<std::string>& previous, const std::string& reason) {
  if (previous && *previous == status) return;
  auto e = session_status_event(tenant, session, status, previous, reason, std::nullopt, std::nullopt, now_rfc3339());
  log::info("session.status", {{"tenant", tenant}, {"session", session}, {"status", status}, {"previous", previous.value_or("")},
                               {"reason", reason}});
  publisher_.publish(config_.topic("sb.events"), tenant, e.dump(), {{"sb-event-type", "session.status"}}, [] {},
                     [tenant, session](const Error& err) {
                       log::error("placer.event_refused", {{"tenant", tenant}, {"session", session}, {"detail", err.what()}});
                     });
}

void Placer::set_status(const std::string& tenant, const std::string& session, int64_t generation, const std::string& status,
                        const std::string& reason) {
  SessionStatusChange change{normalize_session_status(status), std::nullopt, reason, now_rfc3339()};
  auto applied = sessions_.set_status(tenant, session, change, std::nullopt, false, generation);
  if (applied.previous) publish_status(tenant, session, change.status, applied.previous, reason);
}

}  // namespace sb
