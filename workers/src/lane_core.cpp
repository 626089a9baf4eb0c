#include "switchboard/workers/lane_core.hpp"

#include <future>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

struct LaneCore::Job : EngineJob {
  ConsumedRecord record;
  SendCommand command;                       // message.send (lifecycle: id, tenant, session only)
  std::optional<SessionCommand> lifecycle;   // session.* commands
  SessionRoute route;                        // where the session sends, from the claim
  std::optional<EventLoop::Clock::time_point> held_since;  // waiting for the session to be WORKING
  int provider_attempt = 0;    // sends made
  int dependency_attempt = 0;  // pacing / claim failures in a row
  bool paced = false;          // a pacing slot is reserved for the next send
  // Paced, then held (the session was not WORKING): that slot was for a send then. Once the
  // session works again the send asks anew — else every lane's held head (and every replica's)
  // would go out at once with slots granted long ago, ignoring the gap between them.
  bool grant_stale = false;
  bool claimed = false;        // our 'sending' mark is durable
  bool maybe_out = false;      // a request may have reached the provider (in flight, or a maybe-delivered failure)
  // An earlier owner's 'sending' mark found by the claim: when it was set (PostgreSQL's clock).
  std::optional<std::chrono::system_clock::time_point> foreign_mark_at;
};

namespace {
// A stored time ("2026-12-02T01:51:20.233Z") → a time point; nullopt if it isn't one.
std::optional<std::chrono::system_clock::time_point> stored_time(const std::string& s) {
  if (s.size() < 20) return std::nullopt;
  try {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(rfc3339_unix_ms(s)));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string what(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}
}  // namespace

LaneCore::LaneCore(Options options, EventLoop& loop, const SchemaSet& schemas, CommandLedger& ledger,
                   Provider& provider, LaneSink& sink, Pacer* pacer)
    : options_(std::move(options)),
      loop_(loop),
      schemas_(schemas),
      ledger_(ledger),
      provider_(provider),
      sink_(sink),
      pacer_(pacer),
      engine_(loop, options_.max_in_flight, [this](const EngineJobPtr& j) { start(std::static_pointer_cast<Job>(j)); }) {}

// ---------------------------------------------------------------- poll thread

void LaneCore::on_records(std::vector<ConsumedRecord> records) {
  std::vector<JobPtr> jobs;
  jobs.reserve(records.size());
  for (auto& rec : records) {
    ++stats_.received;
    try {
      auto job = std::make_shared<Job>();
      auto parsed = parse_lane_record(rec.key, rec.value, schemas_);
      if (parsed.send) {
        job->command = std::move(*parsed.send);
      } else {
        job->lifecycle = std::move(parsed.lifecycle);
        job->overtakes_held = true;  // a start never waits behind the sends waiting for it
        job->command.id = job->lifecycle->id;
        job->command.tenant = job->lifecycle->tenant;
        job->command.session = job->lifecycle->session;
      }
      job->session_key = job->command.tenant + "/" + job->command.session;
      job->source = rec.source;
      job->epoch = rec.epoch;
      job->record = std::move(rec);
      jobs.push_back(std::move(job));
    } catch (const InvalidInput& e) {
      // A bad record must not stop the partition: park it in the DLQ with the reason.
      ++stats_.dead_lettered;
      log::warn("worker.dead_lettered", {{"lane", options_.lane}, {"topic", rec.source.topic},
                                         {"partition", std::to_string(rec.source.partition)},
                                         {"offset", std::to_string(rec.offset)}, {"reason", "invalid_command"},
                                         {"detail", e.what()}});
      auto copy = std::make_shared<ConsumedRecord>(std::move(rec));
      sink_.dead_letter(*copy, "invalid_command", e.what(), [this, copy] { sink_.finished(*copy); });
    }
  }
  if (jobs.empty()) return;
  later([this, jobs = std::move(jobs)] {
    for (const auto& j : jobs) {
      live_[j->source] = j->epoch;  // records of a partition arrive only while it is owned
      engine_.submit(j);
    }
  });
}

std::vector<std::string> LaneCore::marks_to_return(const std::vector<JobPtr>& jobs) {
  std::vector<std::string> ids;
  for (const auto& j : jobs)
    if (j->claimed && !j->maybe_out) ids.push_back(j->command.id);
  return ids;
}

void LaneCore::on_revoking(const std::vector<kafka::TopicPartition>& parts) {
  std::vector<JobPtr> dropped;
  loop_.run_sync([&] {
    for (const auto& tp : parts) live_.erase(tp);
    for (auto& e : engine_.drop(parts)) dropped.push_back(std::static_pointer_cast<Job>(e));
  });
  // Marks of commands that never reached the provider go back before the partitions do: the
  // next owner must see them as unsent, not as interrupted.
  if (const auto ids = marks_to_return(dropped); !ids.empty()) {
    auto returned = std::make_shared<std::promise<void>>();
    auto fut = returned->get_future();
    ledger_.unclaim(ids, [returned](std::exception_ptr) { returned->set_value(); });
    if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
      log::warn("worker.unclaim_slow", {{"lane", options_.lane}, {"count", std::to_string(ids.size())}});
  }
  std::map<std::pair<kafka::TopicPartition, uint64_t>, std::size_t> counts;
  for (const auto& j : dropped) ++counts[{j->source, j->epoch}];
  for (const auto& [key, n] : counts) {
    stats_.released += n;
    sink_.released(key.first, key.second, n);
  }
}

LaneCore::Load LaneCore::load() {
  Load l;
  loop_.run_sync([&] { l = {engine_.sessions(), engine_.queued(), engine_.in_flight(), settling_.size()}; });
  return l;
}

// ---------------------------------------------------------------- loop thread

bool LaneCore::live(const Job& j) const {
  auto it = live_.find(j.source);
  return it != live_.end() && it->second == j.epoch;
}

void LaneCore::release(const JobPtr& j) {
  ++stats_.released;
  engine_.done(j);
  auto give_back = [this, j] { sink_.released(j->source, j->epoch, 1); };  // revoked: the next owner redoes it
  const auto ids = marks_to_return({j});
  if (ids.empty()) return give_back();
  ledger_.unclaim(ids, [give_back](std::exception_ptr) { give_back(); });
}

SendRequest LaneCore::request_of(const Job& j) const {
  const auto& c = j.command;
  return {c.tenant, c.session, c.id, c.to, c.text, j.route};
}

// The reason of a recorded failure, from the error text it was recorded with (each failure path
// below starts its error with its reason's words), so a republished message.failed says the
// same reason as the first one did.
std::string LaneCore::failure_reason_of(const std::string& error) {
  for (const char* r : {"uncertain", "session_not_working"})
    if (error.rfind(std::string(r) + ":", 0) == 0) return r;
  if (error.rfind("provider rejected:", 0) == 0) return "provider_rejected";
  return "provider_failed";
}

MessageOutcome LaneCore::outcome_of(const Job& j, std::string status) const {
  const auto& c = j.command;
  MessageOutcome o{c.id, c.tenant, c.session, c.to, c.text, c.priority, std::move(status), {}, {}, now_rfc3339(), {}};
  return o;
}

void LaneCore::start(const JobPtr& j) {
  if (!live(*j)) return release(j);
  if (j->lifecycle) return run_lifecycle(j);
  if (auto it = settling_.find(j->command.id); it != settling_.end()) {
    ++stats_.replayed;  // a duplicate of a message just sent: it finishes with the original
    it->second.duplicates.push_back(j->record);
    return engine_.done(j);
  }
  if (pacer_ && !j->paced) return pace(j);
  if (!j->claimed) return claim(j);
  send(j);
}

void LaneCore::run_lifecycle(const JobPtr& j) {
  if (!control_) return dead_letter(j, "unsupported_command", "this worker runs no session lifecycle (session." + j->lifecycle->action + ")");
  control_->execute(*j->lifecycle, [this, j](std::vector<nlohmann::json> events, std::exception_ptr err) {
    later([this, j, events = std::move(events), err]() mutable { on_lifecycle_done(j, std::move(events), err); });
  });
}

void LaneCore::on_lifecycle_done(const JobPtr& j, std::vector<nlohmann::json> events, std::exception_ptr err) {
  if (err) return dependency_failed(j, err, "lifecycle");
  ++stats_.lifecycle;
  engine_.done(j);  // the session's next command may go: its status is recorded
  publish_events(j, std::move(events));
}

// Publishes `events` in order, then the job's record is finished (an event Kafka refuses for
// good parks the record in the DLQ, as for message events).
void LaneCore::publish_events(const JobPtr& j, std::vector<nlohmann::json> events) {
  if (events.empty()) return sink_.finished(j->record);
  auto rest = std::make_shared<std::vector<nlohmann::json>>(std::move(events));
  auto first = rest->front();
  rest->erase(rest->begin());
  sink_.publish_json(first, [this, j, rest] { later([this, j, rest] { publish_events(j, std::move(*rest)); }); },
                     [this, j](const Error& e) {
                       ++stats_.dead_lettered;
                       auto rec = std::make_shared<ConsumedRecord>(j->record);
                       sink_.dead_letter(*rec, "event_unpublishable", e.what(), [this, rec] { sink_.finished(*rec); });
                     });
}

void LaneCore::hold_or_fail(const JobPtr& j, const SendClaim& c) {
  const auto& cmd = j->command;
  const auto now = EventLoop::Clock::now();
  if (!j->held_since) j->held_since = now;
  const bool deleting = c.session_status == "DELETING";
  if (!deleting && now - *j->held_since < options_.hold_max) {
    if (j->held_since == now) {
      ++stats_.held;
      log::info("message.held", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                 {"session_status", c.session_status}});
    }
    // Stays at the head, so the session's order holds; its lifecycle commands run ahead of it.
    // Its pacing slot is not asked again at every look (that would spend the session's
    // per-minute and daily budget while it is down): once, when it may send (on_claimed).
    if (j->paced) j->grant_stale = true;
    return engine_.hold_until(j, now + options_.hold_poll);
  }
  auto o = outcome_of(*j, "failed");
  o.reason = "session_not_working";
  std::string rule;
  if (!deleting)
    rule = options_.hold_max.count() > 0 ? " (sessions.not_working: hold, waited " + std::to_string(options_.hold_max.count()) + " s)"
                                         : " (sessions.not_working: fail)";
  o.error = "session_not_working: session '" + cmd.session + "' is " + c.session_status + rule;
  conclude(j, std::move(o));
}

void LaneCore::pace(const JobPtr& j) {
  pacer_->reserve(j->command.tenant, j->command.session, j->command.to, [this, j](std::chrono::milliseconds wait, std::exception_ptr err) {
    later([this, j, wait, err] {
      if (err) return dependency_failed(j, err, "pacing");
      j->dependency_attempt = 0;
      if (wait.count() > 0) return engine_.retry_at(j, EventLoop::Clock::now() + wait);
      j->paced = true;
      start(j);
    });
  });
}

void LaneCore::claim(const JobPtr& j) {
  ledger_.claim(j->command, [this, j](SendClaim c, std::exception_ptr err) {
    later([this, j, c = std::move(c), err] { on_claimed(j, c, err); });
  });
}

void LaneCore::on_claimed(const JobPtr& j, const SendClaim& c, std::exception_ptr err) {
  if (err) return dependency_failed(j, err, "claim");
  j->dependency_attempt = 0;
  const auto& cmd = j->command;
  switch (c.status) {
    case SendClaim::Status::Fresh:
      j->claimed = true;
      j->route = SessionRoute{c.provider, c.node, c.engine_name, c.phone_number_id, c.secrets, c.generation, c.node_url, c.node_secrets};
      if (pacer_ && j->grant_stale) {  // held since its slot was granted: ask again (start → pace → send)
        j->grant_stale = false;
        j->paced = false;
        return start(j);
      }
      return send(j);
    case SendClaim::Status::NotWorking:
      return hold_or_fail(j, c);
    case SendClaim::Status::Final: {
      if (c.known.status == "cancelled") return skip_unreleased(j, c.known.status);
      // A replay of a command whose outcome is recorded: not sent again; its event is
      // republished with the same id (it may not have reached Kafka before a crash).
      ++stats_.replayed;
      auto o = outcome_of(*j, c.known.status);
      o.provider_message_id = c.known.provider_message_id;
      o.error = c.known.error;
      o.at = c.known.updated_at;
      if (o.status == "failed" && o.error) o.reason = failure_reason_of(*o.error);
      log::info("worker.replay_skipped", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                          {"status", c.known.status}});
      return republish(j, o);
    }
    case SendClaim::Status::InProgress:
      j->foreign_mark_at = stored_time(c.known.updated_at);
      return reconcile(j, "a previous attempt was interrupted before its outcome was recorded");
    case SendClaim::Status::UnknownSession:
      return dead_letter(j, "unknown_session", "tenant '" + cmd.tenant + "' has no session '" + cmd.session + "'");
  }
}

void LaneCore::send(const JobPtr& j) {
  if (!live(*j)) return release(j);  // its mark (if any) is given back: nothing reached the provider
  ++j->provider_attempt;
  j->maybe_out = true;
  j->paced = false;  // a retry takes a new pacing slot
  provider_.send(request_of(*j), [this, j](SendResult r) { later([this, j, r = std::move(r)] { on_sent(j, r); }); });
}

void LaneCore::on_sent(const JobPtr& j, const SendResult& r) {
  const auto& cmd = j->command;
  j->maybe_out = r.status == SendResult::Status::RetryableError && r.maybe_delivered;
  if (r.status == SendResult::Status::Sent) {
    auto o = outcome_of(*j, "sent");
    o.provider_message_id = r.provider_message_id;
    return conclude(j, std::move(o));
  }
  if (r.status == SendResult::Status::Rejected) {
    auto o = outcome_of(*j, "failed");
    o.reason = "provider_rejected";
    o.error = "provider rejected: " + r.error;
    if (!r.pause_reason.empty() && control_) return pause_session(j, r.pause_reason, std::move(o));
    return conclude(j, std::move(o));
  }
  if (r.reroute && !r.maybe_delivered && reroute(j, r)) return;
  if (r.maybe_delivered) return reconcile(j, r.error);  // repeating it could send it twice
  const auto d = options_.provider_retry.after_retryable(r.error, j->provider_attempt, rng_);
  if (d.retry) {
    ++stats_.provider_retries;
    log::warn("worker.provider_retry", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                        {"attempt", std::to_string(j->provider_attempt)}, {"error", r.error}});
    const auto delay = std::max<std::chrono::milliseconds>(d.delay, std::chrono::milliseconds(r.retry_after_ms));
    if (r.throttled && pacer_) pacer_->backoff(cmd.tenant, cmd.session, delay);  // every lane and replica
    return engine_.retry_at(j, EventLoop::Clock::now() + delay);
  }
  auto o = outcome_of(*j, "failed");
  o.reason = "provider_failed";
  o.error = "provider failed after " + std::to_string(j->provider_attempt) + " attempts: " + r.error;
  conclude(j, std::move(o));
}

// The provider flagged this sender (spam limit, policy block): nothing was sent. The session
// pauses (PAUSED, resumed after its cool-down or by API); once that is recorded this message
// goes back to 'queued' and waits like any send to a session that is not WORKING
// (sessions.not_working), its place at the head of the session kept. `failed` is its outcome
// should the pause not be recordable.
void LaneCore::pause_session(const JobPtr& j, const std::string& reason, MessageOutcome failed) {
  ++stats_.paused;
  const auto& cmd = j->command;
  control_->pause(cmd.tenant, cmd.session, reason, [this, j, failed](std::vector<nlohmann::json> events, std::exception_ptr err) mutable {
    for (auto& e : events) sink_.publish_json(e, [] {}, [](const Error&) {});
    later([this, j, failed = std::move(failed), err]() mutable {
      if (err) {
        log::warn("session.pause_failed", {{"tenant", j->command.tenant}, {"session", j->command.session}, {"detail", what(err)}});
        return conclude(j, std::move(failed));
      }
      ledger_.unclaim({j->command.id}, [this, j, failed = std::move(failed)](std::exception_ptr e) mutable {
        later([this, j, failed = std::move(failed), e]() mutable {
          if (e) return conclude(j, std::move(failed));
          j->claimed = false;
          j->maybe_out = false;
          j->provider_attempt = 0;
          engine_.retry_at(j, EventLoop::Clock::now());  // claimed again: held while PAUSED
        });
      });
    });
  });
}

bool LaneCore::reroute(const JobPtr& j, const SendResult& r) {
  // The engine session's placement may be moving (failover, drain): its mark goes back and the
  // send returns to its claim, which reads the placement again and holds it while the session
  // is not WORKING — bounded by sessions.hold_max like any held send.
  const auto now = EventLoop::Clock::now();
  if (!j->held_since) j->held_since = now;
  if (now - *j->held_since >= options_.hold_max) return false;  // the provider attempts decide
  const auto& cmd = j->command;
  log::info("worker.rerouting", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                 {"node", j->route.node}, {"error", r.error}});
  --j->provider_attempt;  // nothing was sent: not an attempt
  j->claimed = false;
  ledger_.unclaim({cmd.id}, [this, j](std::exception_ptr err) {
    later([this, j, err] {
      if (err) j->claimed = true;  // the mark stayed: the send goes to the node it has now
      engine_.hold_until(j, EventLoop::Clock::now() + options_.hold_poll);
    });
  });
  return true;
}

void LaneCore::reconcile(const JobPtr& j, const std::string& why) {
  provider_.reconcile(request_of(*j), [this, j, why](ReconcileResult r) {
    later([this, j, r = std::move(r), why] { on_reconciled(j, r, why); });
  });
}

void LaneCore::on_reconciled(const JobPtr& j, const ReconcileResult& r, const std::string& why) {
  const auto& cmd = j->command;
  if (r.status == ReconcileResult::Status::Sent) {
    ++stats_.reconciled;
    auto o = outcome_of(*j, "sent");
    o.provider_message_id = r.provider_message_id;
    log::info("worker.reconciled", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                    {"provider_message_id", r.provider_message_id}});
    return conclude(j, std::move(o));
  }
  // "Not sent" is proof only when no request of ours may still reach the provider. Right after
  // our own call timed out (provider_attempt > 0) the provider may still be working on it: the
  // lookup races that request and can answer "not sent" before it goes out (found by the chaos
  // harness: a provider hanging past the timeout answered the lookups 404, then sent the held
  // requests, and the resends made each message twice). So then the on_uncertain rule decides,
  // as when the provider can't tell; a dead worker's replayed mark (provider_attempt 0) still
  // trusts the lookup.
  if (r.status == ReconcileResult::Status::NotSent && j->provider_attempt == 0 && j->foreign_mark_at) {
    const auto trusted_at = *j->foreign_mark_at + options_.reconcile_trust_after;
    const auto wait = trusted_at - std::chrono::system_clock::now();
    if (wait > std::chrono::milliseconds(0)) {
      log::info("worker.reconcile_deferred", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                              {"wait_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count())}});
      loop_.post_at(EventLoop::Clock::now() + std::chrono::duration_cast<EventLoop::Clock::duration>(wait), [this, j, why] {
        if (!live(*j)) return release(j);  // revoked meanwhile: the next owner looks again
        reconcile(j, why);
      });
      return;
    }
  }
  const bool not_sent = r.status == ReconcileResult::Status::NotSent && j->provider_attempt == 0;
  if (not_sent) j->maybe_out = false;  // the provider says nothing went out
  if (not_sent || options_.on_uncertain == OnUncertain::Resend) {
    // Safe (or allowed) to send again — within the provider attempts, like any retry.
    const auto d = options_.provider_retry.after_retryable(why, std::max(1, j->provider_attempt), rng_);
    if (j->provider_attempt > 0 && !d.retry) {
      auto o = outcome_of(*j, "failed");
      o.reason = "provider_failed";
      o.error = "provider failed after " + std::to_string(j->provider_attempt) + " attempts: " + why;
      return conclude(j, std::move(o));
    }
    log::warn("worker.resending", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id},
                                   {"provider_says", not_sent ? "not_sent" : "unknown"},
                                   {"detail", why}});
    j->claimed = true;
    if (j->provider_attempt == 0) return send(j);  // never sent by us: the first attempt
    ++stats_.provider_retries;
    return engine_.retry_at(j, EventLoop::Clock::now() + d.delay);
  }
  ++stats_.uncertain;
  auto o = outcome_of(*j, "failed");
  o.reason = "uncertain";
  o.error = "uncertain: the provider may or may not have sent it (" + why +
            "); not sent again (worker.on_uncertain: fail)";
  log::warn("message.uncertain", {{"tenant", cmd.tenant}, {"session", cmd.session}, {"message_id", cmd.id}, {"detail", why}});
  conclude(j, std::move(o));
}

void LaneCore::conclude(const JobPtr& j, MessageOutcome o) {
  (o.status == "sent" ? stats_.sent : stats_.failed)++;
  if (o.status != "sent")
    log::warn("message.failed", {{"tenant", o.tenant_id}, {"session", o.session}, {"message_id", o.id},
                                 {"reason", o.reason.value_or("")}, {"error", o.error.value_or("")}});
  settling_[o.id] = Settling{o, {}};
  engine_.done(j);  // the session's next command may go: recording trails behind
  ledger_.record(o, [this, j, o](CommandLedger::RecordResult r, std::exception_ptr err) {
    later([this, j, o, r, err] { on_recorded(j, o, r, err); });
  });
}

void LaneCore::on_recorded(const JobPtr& j, const MessageOutcome& o, const CommandLedger::RecordResult& r,
                           std::exception_ptr err) {
  std::vector<ConsumedRecord> records{j->record};
  if (auto it = settling_.find(o.id); it != settling_.end()) {
    for (auto& d : it->second.duplicates) records.push_back(std::move(d));
    settling_.erase(it);
  }
  if (!err && r.superseded) {
    // Found by the chaos harness: a zombie's timed-out call ended after the next owner had
    // reconciled the message as sent; publishing ours too gave it two terminal events.
    ++stats_.superseded;
    log::warn("message.outcome_superseded", {{"tenant", o.tenant_id}, {"session", o.session}, {"message_id", o.id},
                                             {"ours", o.status}, {"stored", r.stored_status}});
    for (const auto& rec : records) sink_.finished(rec);
    return;
  }
  if (!err) return publish(std::move(records), o);
  // The outcome can't be stored (a row PostgreSQL refuses): say so on sb.events all the same —
  // the send happened — and park the command in the DLQ so an operator sees it.
  const auto detail = what(err);
  log::error("worker.outcome_unrecordable", {{"tenant", o.tenant_id}, {"message_id", o.id}, {"detail", detail}});
  auto recs = std::make_shared<std::vector<ConsumedRecord>>(std::move(records));
  auto park = [this, recs](const std::string& why) {
    stats_.dead_lettered += recs->size();
    for (const auto& r : *recs) {
      auto rec = std::make_shared<ConsumedRecord>(r);
      sink_.dead_letter(*rec, "outcome_unrecordable", why, [this, rec] { sink_.finished(*rec); });
    }
  };
  sink_.publish_event(o, [park, detail] { park(detail); },
                      [park, detail](const Error& e) { park(detail + "; event refused: " + e.what()); });
}

void LaneCore::publish(std::vector<ConsumedRecord> records, const MessageOutcome& o) {
  auto recs = std::make_shared<std::vector<ConsumedRecord>>(std::move(records));
  sink_.publish_event(o, [this, recs] {
    for (const auto& r : *recs) sink_.finished(r);
  }, [this, recs](const Error& e) {
    stats_.dead_lettered += recs->size();
    for (const auto& r : *recs) {
      auto rec = std::make_shared<ConsumedRecord>(r);
      sink_.dead_letter(*rec, "event_unpublishable", e.what(), [this, rec] { sink_.finished(*rec); });
    }
  });
}

// A scheduled send's command whose message was cancelled after a scheduler published it and then
// died before committing the release (core/scheduled_store.hpp): nothing is sent, no event goes out.
void LaneCore::skip_unreleased(const JobPtr& j, const std::string& status) {
  ++stats_.replayed;
  log::info("worker.unreleased_skipped", {{"tenant", j->command.tenant}, {"session", j->command.session},
                                          {"message_id", j->command.id}, {"status", status}});
  engine_.done(j);
  sink_.finished(j->record);
}

void LaneCore::republish(const JobPtr& j, const MessageOutcome& o) {
  publish({j->record}, o);
  engine_.done(j);
}

void LaneCore::dead_letter(const JobPtr& j, const std::string& reason, const std::string& detail) {
  ++stats_.dead_lettered;
  const auto& r = j->record;
  log::warn("worker.dead_lettered", {{"lane", options_.lane}, {"topic", r.source.topic},
                                     {"partition", std::to_string(r.source.partition)}, {"offset", std::to_string(r.offset)},
                                     {"message_id", j->command.id}, {"reason", reason}, {"detail", detail}});
  auto rec = std::make_shared<ConsumedRecord>(r);
  sink_.dead_letter(*rec, reason, detail, [this, rec] { sink_.finished(*rec); });
  engine_.done(j);
}

void LaneCore::dependency_failed(const JobPtr& j, std::exception_ptr err, const char* step) {
  const auto d = options_.dependency_retry.after(err, ++j->dependency_attempt, rng_);
  if (!d.retry) return dead_letter(j, std::string(step) + "_failed", d.why);  // poison: never wedge (review C1)
  ++stats_.dependency_retries;
  log::warn("worker.dependency_unavailable", {{"tenant", j->command.tenant}, {"message_id", j->command.id},
                                              {"step", step}, {"attempt", std::to_string(j->dependency_attempt)},
                                              {"detail", what(err)}});
  engine_.retry_at(j, EventLoop::Clock::now() + d.delay);
}

}  // namespace sb
