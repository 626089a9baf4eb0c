// LaneCore, the lane worker's flow, with fakes for PostgreSQL, Kafka, Redis and the provider
// (the real ones are covered by the integration suite). Review items: C1 (a non-retryable
// error must not wedge a partition), C2 (one bad outcome row must not stall a lane).
#include <catch2/catch.hpp>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "switchboard/core/ids.hpp"
#include "switchboard/workers/lane_core.hpp"

using namespace std::chrono_literals;

namespace {

// One lock and one condition for every fake, so a test waits on "the world changed".
struct World {
  std::mutex mu;
  std::condition_variable cv;
  // Waits for pred, re-checked on every change and every 10 ms (for state only the loop knows).
  template <typename P>
  bool wait(P pred, std::chrono::milliseconds d = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    std::unique_lock l(mu);
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      cv.wait_for(l, 10ms);
    }
    return true;
  }
  void changed() { cv.notify_all(); }
};

// For state only the event loop knows (LaneCore::load() runs on it): polled without holding
// the fakes' lock, which the loop's own callbacks take.
template <typename P>
bool poll_until(P pred, std::chrono::milliseconds d = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + d;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct FakeLedger : sb::CommandLedger {
  World& w;
  std::map<std::string, sb::SendClaim> claims;  // preset answers (default Fresh)
  std::set<std::string> poison_records;          // outcomes PostgreSQL "refuses"
  std::map<std::string, sb::MessageOutcome> recorded;
  explicit FakeLedger(World& world) : w(world) {}
  void claim(const sb::SendCommand& c, Claimed done) override {
    sb::SendClaim claim;
    {
      std::lock_guard l(w.mu);
      auto it = claims.find(c.id);
      claim = it != claims.end() ? it->second : sb::SendClaim{sb::SendClaim::Status::Fresh, {}};
    }
    done(claim, nullptr);
  }
  std::vector<std::string> unclaimed;
  void unclaim(const std::vector<std::string>& ids, Recorded done) override {
    {
      std::lock_guard l(w.mu);
      unclaimed.insert(unclaimed.end(), ids.begin(), ids.end());
    }
    done(nullptr);
  }
  std::map<std::string, std::string> concluded_elsewhere;  // id → the status another owner stored
  void record(const sb::MessageOutcome& o, OutcomeRecorded done) override {
    bool poison;
    RecordResult result;
    {
      std::lock_guard l(w.mu);
      poison = poison_records.count(o.id) > 0;
      if (auto it = concluded_elsewhere.find(o.id); it != concluded_elsewhere.end() && it->second != o.status)
        result = {true, it->second};
      else if (!poison)
        recorded[o.id] = o;
    }
    done(result, poison ? std::make_exception_ptr(sb::Error(sb::ErrorKind::Internal, "invalid byte sequence")) : nullptr);
    w.changed();
  }
};

struct FakeProvider : sb::Provider {
  World& w;
  bool hold = false;                            // keep calls in flight until release()
  std::vector<std::pair<sb::SendRequest, SendDone>> held;
  std::vector<sb::SendRequest> sends;           // every send, in call order
  std::map<std::string, sb::SendResult> answers;  // by message id (default Sent)
  std::map<std::string, sb::ReconcileResult> lookups;
  std::map<std::string, int> in_flight_by_session;
  int max_in_flight_one_session = 0, max_in_flight = 0, in_flight = 0;
  explicit FakeProvider(World& world) : w(world) {}
  using Provider::send;
  void send(const sb::SendRequest& r, SendDone done) override {
    sb::SendResult result;
    {
      std::lock_guard l(w.mu);
      sends.push_back(r);
      max_in_flight_one_session = std::max(max_in_flight_one_session, ++in_flight_by_session[r.session]);
      max_in_flight = std::max(max_in_flight, ++in_flight);
      auto it = answers.find(r.message_id);
      result = it != answers.end() ? it->second : sb::SendResult{sb::SendResult::Status::Sent, "p-" + r.message_id, {}, false};
      if (hold) {
        held.emplace_back(r, std::move(done));
        w.changed();
        return;
      }
      --in_flight_by_session[r.session];
      --in_flight;
    }
    done(result);
    w.changed();
  }
  void release_all() {
    std::vector<std::pair<sb::SendRequest, SendDone>> go;
    {
      std::lock_guard l(w.mu);
      hold = false;
      go.swap(held);
      for (auto& [r, _] : go) {
        --in_flight_by_session[r.session];
        --in_flight;
      }
    }
    for (auto& [r, done] : go) done({sb::SendResult::Status::Sent, "p-" + r.message_id, {}, false});
  }
  int reconciles = 0;
  void reconcile(const sb::SendRequest& r, ReconcileDone done) override {
    sb::ReconcileResult res;
    {
      std::lock_guard l(w.mu);
      ++reconciles;
      auto it = lookups.find(r.message_id);
      if (it != lookups.end()) res = it->second;
    }
    done(res);
  }
  std::string name() const override { return "fake"; }
};

struct FakeSink : sb::LaneSink {
  World& w;
  std::vector<sb::MessageOutcome> events;
  std::vector<std::pair<std::string, std::string>> dead;  // (message key/value excerpt, reason)
  std::vector<int64_t> finished_offsets;
  std::size_t released_count = 0;
  explicit FakeSink(World& world) : w(world) {}
  void publish_event(const sb::MessageOutcome& o, std::function<void()> acked, std::function<void(const sb::Error&)>) override {
    {
      std::lock_guard l(w.mu);
      events.push_back(o);
    }
    acked();
  }
  void publish_json(const nlohmann::json& e, std::function<void()> acked, std::function<void(const sb::Error&)>) override {
    {
      std::lock_guard l(w.mu);
      json_events.push_back(e);
    }
    acked();
  }
  std::vector<nlohmann::json> json_events;
  void dead_letter(const sb::ConsumedRecord& r, const std::string& reason, const std::string&,
                   std::function<void()> acked) override {
    {
      std::lock_guard l(w.mu);
      dead.emplace_back(r.value, reason);
    }
    acked();
  }
  void finished(const sb::ConsumedRecord& r) override {
    std::lock_guard l(w.mu);
    finished_offsets.push_back(r.offset);
    w.changed();
  }
  void released(const sb::kafka::TopicPartition&, uint64_t, std::size_t n) override {
    std::lock_guard l(w.mu);
    released_count += n;
    w.changed();
  }
};

struct FakePacer : sb::Pacer {
  World& w;
  std::set<std::string> broken_sessions;            // throw a non-retryable error (Redis READONLY once was)
  std::map<std::string, std::chrono::milliseconds> gap;  // per session: wait between sends
  std::map<std::string, sb::EventLoop::Clock::time_point> next;
  explicit FakePacer(World& world) : w(world) {}
  void reserve(const std::string&, const std::string& session, const std::string&, Done done) override {
    std::exception_ptr err;
    std::chrono::milliseconds wait{0};
    {
      std::lock_guard l(w.mu);
      if (broken_sessions.count(session)) {
        broken_sessions.erase(session);  // once
        err = std::make_exception_ptr(sb::Error(sb::ErrorKind::Internal, "ERR script failed"));
      } else if (auto g = gap.find(session); g != gap.end()) {
        const auto now = sb::EventLoop::Clock::now();
        auto& n = next[session];
        if (n > now) wait = std::chrono::duration_cast<std::chrono::milliseconds>(n - now) + 1ms;
        else n = now + g->second;
      }
    }
    done(wait, err);
  }
  std::vector<std::pair<std::string, std::chrono::milliseconds>> backoffs;
  void backoff(const std::string&, const std::string& session, std::chrono::milliseconds wait) override {
    std::lock_guard l(w.mu);
    backoffs.emplace_back(session, wait);
  }
};

// Pauses like SessionLifecycle: the session's claims answer NotWorking (PAUSED) until resumed.
struct FakeControl : sb::SessionControl {
  World& w;
  FakeLedger& ledger;
  std::vector<std::string> paused;    // reasons
  std::set<std::string> watched;      // message ids whose claims the pause turns to NotWorking
  std::vector<std::string> executed;  // lifecycle actions, in the order run
  FakeControl(World& world, FakeLedger& l) : w(world), ledger(l) {}
  // A start or resume makes the session work: the watched sends' claims are fresh again.
  void execute(const sb::SessionCommand& c, Done done) override {
    {
      std::lock_guard l(w.mu);
      executed.push_back(c.action);
    }
    if (c.action == "start" || c.action == "resume") resume();
    done({}, nullptr);
    w.changed();
  }
  void pause(const std::string&, const std::string& session, const std::string& reason, Done done) override {
    {
      std::lock_guard l(w.mu);
      paused.push_back(reason);
      for (const auto& id : watched) ledger.claims[id] = sb::SendClaim{sb::SendClaim::Status::NotWorking, {}, "PAUSED"};
    }
    done({nlohmann::json{{"type", "session.status"}, {"session", session}, {"data", {{"status", "PAUSED"}, {"reason", reason}}}}}, nullptr);
    w.changed();
  }
  void resume() {
    std::lock_guard l(w.mu);
    for (const auto& id : watched) ledger.claims.erase(id);
  }
};

const sb::kafka::TopicPartition kPart{"sb.commands.default", 0};

struct Harness {
  World w;
  sb::SchemaSet schemas{SWITCHBOARD_DEFAULT_SCHEMAS_DIR};
  FakeLedger ledger{w};
  FakeProvider provider{w};
  FakeSink sink{w};
  FakePacer pacer{w};
  std::string tenant = sb::new_uuid_v7();
  int64_t next_offset = 0;
  sb::LaneCore::Options options;
  std::unique_ptr<sb::LaneCore> core;
  std::unique_ptr<sb::EventLoop> loop;  // after core: its tasks reach the core

  explicit Harness(sb::LaneCore::Options o = {}, bool pacing = false) : options(o) {
    loop = std::make_unique<sb::EventLoop>();
    core = std::make_unique<sb::LaneCore>(options, *loop, schemas, ledger, provider, sink, pacing ? &pacer : nullptr);
  }
  ~Harness() {
    loop.reset();  // stop the loop before the core goes
    core.reset();
  }
  sb::ConsumedRecord record(const std::string& session, const std::string& id, std::string text = "hello") {
    sb::SendCommand c{id, tenant, session, "default", sb::now_rfc3339(), "+15551234567", std::move(text)};
    return {kPart, next_offset++, 1, tenant, sb::to_json(c).dump()};
  }
  std::string submit(const std::string& session, std::string id = sb::new_uuid_v7()) {
    std::vector<sb::ConsumedRecord> batch{record(session, id)};
    core->on_records(std::move(batch));
    return id;
  }
  bool all_finished(std::size_t n, std::chrono::milliseconds d = 10s) {
    return w.wait([&] { return sink.finished_offsets.size() >= n; }, d);
  }
  std::vector<std::string> sent_ids(const std::string& session) {
    std::lock_guard l(w.mu);
    std::vector<std::string> out;
    for (const auto& s : provider.sends)
      if (s.session == session) out.push_back(s.message_id);
    return out;
  }
};

}  // namespace

TEST_CASE("lane core: a session's commands run one at a time in order, sessions run side by side",
          "[unit][lane][concurrency]") {
  Harness h;
  h.provider.hold = true;
  std::map<std::string, std::vector<std::string>> order;
  std::vector<sb::ConsumedRecord> batch;
  for (int i = 0; i < 5; ++i)
    for (const char* s : {"a", "b", "c"}) {
      const auto id = sb::new_uuid_v7();
      order[s].push_back(id);
      batch.push_back(h.record(s, id));
    }
  h.core->on_records(std::move(batch));
  // All three sessions get a call in flight at once; none gets two.
  REQUIRE(h.w.wait([&] { return h.provider.held.size() == 3; }));
  {
    std::lock_guard l(h.w.mu);
    CHECK(h.provider.max_in_flight == 3);
    CHECK(h.provider.max_in_flight_one_session == 1);
  }
  h.provider.release_all();
  REQUIRE(h.all_finished(15));
  for (const char* s : {"a", "b", "c"}) CHECK(h.sent_ids(s) == order[s]);
  CHECK(h.provider.max_in_flight_one_session == 1);
  CHECK(h.ledger.recorded.size() == 15);
  CHECK(h.sink.events.size() == 15);
  CHECK(h.core->stats().sent == 15);
}

TEST_CASE("lane core C1: a non-retryable dependency error ends the command, the session goes on", "[unit][lane]") {
  Harness h({}, /*pacing=*/true);
  h.pacer.broken_sessions.insert("a");  // like Redis answering an error the old core rethrew and lost
  const auto first = h.submit("a");
  const auto second = h.submit("a");
  REQUIRE(h.all_finished(2));  // both offsets finish: the partition can commit past the first
  {
    std::lock_guard l(h.w.mu);
    REQUIRE(h.sink.dead.size() == 1);
    CHECK(h.sink.dead[0].second == "pacing_failed");
    CHECK(h.sink.dead[0].first.find(first) != std::string::npos);
  }
  CHECK(h.sent_ids("a") == std::vector<std::string>{second});  // after it, in order
}

TEST_CASE("lane core C2: an outcome PostgreSQL refuses is evented and dead-lettered, the rest flow",
          "[unit][lane]") {
  Harness h;
  const auto bad = sb::new_uuid_v7();
  h.ledger.poison_records.insert(bad);
  h.submit("a");
  h.submit("a", bad);
  h.submit("a");
  REQUIRE(h.all_finished(3));
  std::lock_guard l(h.w.mu);
  CHECK(h.ledger.recorded.size() == 2);
  CHECK(h.sink.events.size() == 3);  // the send happened: the tenant is told
  REQUIRE(h.sink.dead.size() == 1);
  CHECK(h.sink.dead[0].second == "outcome_unrecordable");
}

TEST_CASE("lane core: invalid records and unknown sessions go to the DLQ, replays are not sent again",
          "[unit][lane]") {
  Harness h;
  const auto replay = sb::new_uuid_v7(), ghost = sb::new_uuid_v7();
  h.ledger.claims[replay] = {sb::SendClaim::Status::Final, {"sent", "p-earlier", std::nullopt, "2026-01-01T00:00:00.000Z"}};
  h.ledger.claims[ghost] = {sb::SendClaim::Status::UnknownSession, {}};
  std::vector<sb::ConsumedRecord> batch{h.record("a", replay), h.record("a", ghost),
                                        {kPart, h.next_offset++, 1, h.tenant, "{not json"},
                                        h.record("a", sb::new_uuid_v7(), std::string("nul\0byte", 8))};
  h.core->on_records(std::move(batch));
  REQUIRE(h.all_finished(4));
  std::lock_guard l(h.w.mu);
  CHECK(h.provider.sends.empty());
  REQUIRE(h.sink.events.size() == 1);  // the replay's event again (same outcome)
  CHECK(h.sink.events[0].provider_message_id == std::optional<std::string>("p-earlier"));
  std::multiset<std::string> reasons;
  for (const auto& d : h.sink.dead) reasons.insert(d.second);
  CHECK(reasons == std::multiset<std::string>{"invalid_command", "invalid_command", "unknown_session"});
}

// Found by the chaos harness: a worker SIGKILLed after recording failed/uncertain but before
// its event reached Kafka; the replay republished message.failed without its reason.
TEST_CASE("lane core: a replayed failure republishes message.failed with the reason it was recorded with", "[unit][lane]") {
  Harness h;
  const auto uncertain = sb::new_uuid_v7(), rejected = sb::new_uuid_v7(), failed = sb::new_uuid_v7();
  h.ledger.claims[uncertain] = {sb::SendClaim::Status::Final,
                                {"failed", std::nullopt, "uncertain: the provider may or may not have sent it (timeout)", "2026-01-01T00:00:00.000Z"}};
  h.ledger.claims[rejected] = {sb::SendClaim::Status::Final, {"failed", std::nullopt, "provider rejected: 400", "2026-01-01T00:00:00.000Z"}};
  h.ledger.claims[failed] = {sb::SendClaim::Status::Final,
                             {"failed", std::nullopt, "provider failed after 5 attempts: 500", "2026-01-01T00:00:00.000Z"}};
  h.core->on_records({h.record("a", uncertain), h.record("b", rejected), h.record("c", failed)});
  REQUIRE(h.all_finished(3));
  std::lock_guard l(h.w.mu);
  CHECK(h.provider.sends.empty());
  std::map<std::string, std::optional<std::string>> reasons;
  for (const auto& e : h.sink.events) reasons[e.id] = e.reason;
  CHECK(reasons[uncertain] == std::optional<std::string>("uncertain"));
  CHECK(reasons[rejected] == std::optional<std::string>("provider_rejected"));
  CHECK(reasons[failed] == std::optional<std::string>("provider_failed"));
}

// Found by the chaos harness (seed 3569250427): a SIGSTOPped worker's timed-out call ended after
// its partition's next owner had reconciled the message as sent; the zombie's failed/uncertain was
// refused by PostgreSQL but published anyway, so the message had two terminal events.
// Found by the chaos harness (seed 4221937513): a worker SIGSTOPped during a provider hang still
// had its call held by the provider; the partition's next owner looked the message up, heard "not
// sent", and sent it again — 48 messages twice. A "not sent" for a mark younger than
// reconcile_trust_after is asked again once the mark is that old.
TEST_CASE("lane core: a provider's 'not sent' for another owner's fresh mark is trusted only once the mark is old",
          "[unit][lane]") {
  sb::LaneCore::Options o;
  o.reconcile_trust_after = 400ms;
  Harness h(o);
  const auto fresh = sb::new_uuid_v7(), old = sb::new_uuid_v7();
  h.ledger.claims[fresh] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, sb::now_rfc3339()}};
  h.ledger.claims[old] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, "2026-01-01T00:00:00.000Z"}};
  h.provider.lookups[fresh] = {sb::ReconcileResult::Status::NotSent, "", ""};
  h.provider.lookups[old] = {sb::ReconcileResult::Status::NotSent, "", ""};
  const auto t0 = std::chrono::steady_clock::now();
  h.submit("a", fresh);
  h.submit("b", old);
  REQUIRE(h.all_finished(2));
  const auto took = std::chrono::steady_clock::now() - t0;
  std::lock_guard l(h.w.mu);
  REQUIRE(h.provider.sends.size() == 2);  // each sent once: the provider said so, and no one else could still send it
  CHECK(h.provider.sends[0].message_id == old);  // the old mark's lookup is trusted at once
  CHECK(h.provider.reconciles == 3);             // the fresh one was asked again when its mark was old enough
  CHECK(took >= 350ms);
}

TEST_CASE("lane core: an outcome the ledger finds superseded by another owner's is not published", "[unit][lane]") {
  Harness h;
  const auto zombie = sb::new_uuid_v7(), retried = sb::new_uuid_v7();
  h.provider.answers[zombie] = {sb::SendResult::Status::Rejected, {}, "400 invalid recipient", false};
  h.ledger.concluded_elsewhere[zombie] = "sent";
  h.ledger.concluded_elsewhere[retried] = "sent";  // the same outcome, stored by an earlier attempt: ours
  h.submit("a", zombie);
  h.submit("b", retried);
  REQUIRE(h.all_finished(2));
  std::lock_guard l(h.w.mu);
  REQUIRE(h.sink.events.size() == 1);
  CHECK(h.sink.events[0].id == retried);
  CHECK(h.sink.dead.empty());
  CHECK(h.core->stats().superseded == 1);
}

TEST_CASE("lane core: an interrupted send is never repeated blindly", "[unit][lane]") {
  SECTION("found 'sending' and the provider can't tell: failed as uncertain, not sent") {
    Harness h;
    const auto id = sb::new_uuid_v7();
    h.ledger.claims[id] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, ""}};
    h.submit("a", id);
    REQUIRE(h.all_finished(1));
    CHECK(h.provider.sends.empty());
    REQUIRE(h.ledger.recorded.count(id));
    CHECK(h.ledger.recorded[id].status == "failed");
    CHECK(h.ledger.recorded[id].reason == std::optional<std::string>("uncertain"));
    CHECK(h.core->stats().uncertain == 1);
  }
  SECTION("found 'sending' and the provider confirms it: sent, without a second call") {
    Harness h;
    const auto id = sb::new_uuid_v7();
    h.ledger.claims[id] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, ""}};
    h.provider.lookups[id] = {sb::ReconcileResult::Status::Sent, "p-first", {}};
    h.submit("a", id);
    REQUIRE(h.all_finished(1));
    CHECK(h.provider.sends.empty());
    CHECK(h.ledger.recorded[id].status == "sent");
    CHECK(h.ledger.recorded[id].provider_message_id == std::optional<std::string>("p-first"));
  }
  SECTION("our own call timed out: a 'not sent' lookup is no proof (the call may still go out), so uncertain, sent once") {
    // Regression (chaos harness, provider hanging past the timeout): the lookup answered 404
    // while the held request was still at the provider; resending made it two sends.
    sb::LaneCore::Options o;
    o.provider_retry = sb::RetryPolicy({1ms, 5ms, 2.0, 0.0, 3});
    Harness h(o);
    const auto id = sb::new_uuid_v7();
    h.provider.answers[id] = {sb::SendResult::Status::RetryableError, {}, "timeout after 10000 ms", true};
    h.provider.lookups[id] = {sb::ReconcileResult::Status::NotSent, {}, {}};
    h.submit("a", id);
    REQUIRE(h.all_finished(1));
    CHECK(h.provider.sends.size() == 1);
    CHECK(h.ledger.recorded[id].status == "failed");
    CHECK(h.ledger.recorded[id].reason == std::optional<std::string>("uncertain"));
  }
  SECTION("a dead worker's mark and the provider says 'not sent': sent by us, retried within the attempts") {
    sb::LaneCore::Options o;
    o.provider_retry = sb::RetryPolicy({1ms, 5ms, 2.0, 0.0, 3});
    Harness h(o);
    const auto id = sb::new_uuid_v7();
    h.ledger.claims[id] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, ""}};
    h.provider.lookups[id] = {sb::ReconcileResult::Status::NotSent, {}, {}};
    h.provider.answers[id] = {sb::SendResult::Status::RetryableError, {}, "HTTP 503", false};  // certainly not sent
    h.submit("a", id);
    REQUIRE(h.all_finished(1));
    CHECK(h.provider.sends.size() == 3);
    CHECK(h.ledger.recorded[id].status == "failed");
    CHECK(h.ledger.recorded[id].reason == std::optional<std::string>("provider_failed"));
  }
  SECTION("on_uncertain: resend sends it again") {
    sb::LaneCore::Options o;
    o.on_uncertain = sb::LaneCore::OnUncertain::Resend;
    Harness h(o);
    const auto id = sb::new_uuid_v7();
    h.ledger.claims[id] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, ""}};
    h.submit("a", id);
    REQUIRE(h.all_finished(1));
    CHECK(h.provider.sends.size() == 1);
    CHECK(h.ledger.recorded[id].status == "sent");
  }
}

TEST_CASE("lane core: retryable provider errors back off and give up after the attempts", "[unit][lane]") {
  sb::LaneCore::Options o;
  o.provider_retry = sb::RetryPolicy({1ms, 5ms, 2.0, 0.0, 3});
  Harness h(o);
  const auto id = sb::new_uuid_v7();
  h.provider.answers[id] = {sb::SendResult::Status::RetryableError, {}, "HTTP 503", false};
  h.submit("a", id);
  REQUIRE(h.all_finished(1));
  CHECK(h.provider.sends.size() == 3);
  CHECK(h.ledger.recorded[id].status == "failed");
  CHECK(h.ledger.recorded[id].reason == std::optional<std::string>("provider_failed"));
}

TEST_CASE("lane core: a revoke drops what has not started, the running command finishes", "[unit][lane][concurrency]") {
  Harness h;
  h.provider.hold = true;
  h.submit("a");
  for (int i = 0; i < 4; ++i) h.submit("a");
  REQUIRE(h.w.wait([&] { return h.provider.held.size() == 1; }));
  h.core->on_revoking({kPart});
  {
    std::lock_guard l(h.w.mu);
    CHECK(h.sink.released_count == 4);
  }
  h.provider.release_all();
  // The started one ends as usual (its offset finish is ignored by epoch after the revoke).
  REQUIRE(h.w.wait([&] { return h.ledger.recorded.size() == 1; }));
  CHECK(h.provider.sends.size() == 1);
}

TEST_CASE("lane core: a claimed command revoked during a retry back-off gets its mark back (not sent twice, not uncertain)",
          "[unit][lane]") {
  sb::LaneCore::Options o;
  o.provider_retry = sb::RetryPolicy({std::chrono::hours(1), std::chrono::hours(1), 2.0, 0.0, 3});
  Harness h(o);
  const auto refused = sb::new_uuid_v7(), timed_out = sb::new_uuid_v7();
  h.provider.answers[refused] = {sb::SendResult::Status::RetryableError, {}, "HTTP 503", false};  // certainly not sent
  // A dead worker's call timed out (its mark replayed); the provider says "not sent"; our resend is refused.
  h.ledger.claims[timed_out] = {sb::SendClaim::Status::InProgress, {"sending", {}, {}, ""}};
  h.provider.lookups[timed_out] = {sb::ReconcileResult::Status::NotSent, {}, {}};
  h.provider.answers[timed_out] = {sb::SendResult::Status::RetryableError, {}, "HTTP 503", false};
  h.submit("a", refused);
  h.submit("b", timed_out);
  // Both wait an hour for their retry: 'refused' after its 503, 'timed_out' after "not sent" and a 503.
  REQUIRE(poll_until([&] { return h.core->load().queued == 2; }));
  h.core->on_revoking({kPart});
  std::lock_guard l(h.w.mu);
  CHECK(h.sink.released_count == 2);
  // Neither request is out (the provider said so): both marks go back for the next owner.
  std::set<std::string> back(h.ledger.unclaimed.begin(), h.ledger.unclaimed.end());
  CHECK(back == std::set<std::string>{refused, timed_out});
}

TEST_CASE("lane core: a paced session waits on a timer without slowing 1,000 other sessions",
          "[unit][lane][pacing][concurrency]") {
  Harness h({}, /*pacing=*/true);
  h.pacer.gap["slow"] = 1h;  // one send, then an hour's wait
  h.submit("slow");
  h.submit("slow");
  for (int i = 0; i < 1000; ++i) h.submit("s" + std::to_string(i));
  REQUIRE(h.all_finished(1001));
  CHECK(h.sent_ids("slow").size() == 1);
  const auto load = h.core->load();
  CHECK(load.queued == 1);     // the paced one, waiting on its timer
  CHECK(load.in_flight == 0);  // holding no slot
}

namespace {
long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string k;
  while (in >> k) {
    if (k == "VmRSS:") {
      long v;
      in >> v;
      return v;
    }
  }
  return 0;
}
}  // namespace

TEST_CASE("lane core: 100,000 sessions waiting on pacing timers cost memory only", "[unit][lane][pacing][scale]") {
  Harness h({}, /*pacing=*/true);
  const int kSessions = std::getenv("SB_SESSIONS") ? std::atoi(std::getenv("SB_SESSIONS")) : 100000;
  std::vector<sb::ConsumedRecord> warm;
  for (int i = 0; i < kSessions; ++i) h.pacer.gap["s" + std::to_string(i)] = 1h;
  // Each session sends once (taking its pacing slot), then its second command waits an hour.
  for (int round = 0; round < 2; ++round) {
    std::vector<sb::ConsumedRecord> batch;
    for (int i = 0; i < kSessions; ++i) batch.push_back(h.record("s" + std::to_string(i), sb::new_uuid_v7()));
    const long before = rss_kb();
    h.core->on_records(std::move(batch));
    if (round == 0) {
      REQUIRE(h.all_finished(kSessions, 60s));
    } else {
      REQUIRE(poll_until([&] { return h.core->load().queued == static_cast<std::size_t>(kSessions); }, 60s));
      const auto load = h.core->load();
      CHECK(load.sessions == kSessions);
      CHECK(load.in_flight == 0);
      CHECK(h.loop->timers() >= kSessions);
      const double per_session = (rss_kb() - before) * 1024.0 / kSessions;
      WARN("100,000 paced sessions, each holding one queued command and a timer: " << per_session
                                                                                     << " bytes per session (RSS delta)");
      // The queued command (its record and parsed copy) dominates; the session itself is small.
      CHECK(per_session < 4096);
    }
  }
}

TEST_CASE("lane core: a ban signal pauses the session and puts the send back: it is held while PAUSED and sent "
          "once resumed, a throttle backs the session off through the pacer",
          "[unit][lane][pacing]") {
  sb::LaneCore::Options o;
  o.hold_poll = 20ms;
  o.provider_retry = sb::RetryPolicy({1ms, 5ms, 2.0, 0.0, 3});
  Harness h(o, /*pacing=*/true);
  FakeControl control(h.w, h.ledger);
  h.core->set_session_control(&control);
  const auto id = sb::new_uuid_v7();
  {
    std::lock_guard l(h.w.mu);
    control.watched.insert(id);
    sb::SendResult banned{sb::SendResult::Status::Rejected, {}, "HTTP 400, Graph error 131048", false};
    banned.pause_reason = "spam_rate_limit";
    h.provider.answers[id] = banned;
  }
  h.submit("banned", id);
  REQUIRE(h.w.wait([&] { return !control.paused.empty() && !h.ledger.unclaimed.empty(); }));
  {
    std::lock_guard l(h.w.mu);
    CHECK(control.paused == std::vector<std::string>{"spam_rate_limit"});
    CHECK(h.ledger.unclaimed == std::vector<std::string>{id});  // back to 'queued', not failed
    CHECK(h.ledger.recorded.empty());
    REQUIRE(h.sink.json_events.size() == 1);
    CHECK(h.sink.json_events[0]["data"]["status"] == "PAUSED");
    h.provider.answers.erase(id);  // the number recovered
  }
  REQUIRE(poll_until([&] { return h.core->stats().held >= 1; }));  // held by the not-working rule meanwhile
  control.resume();
  REQUIRE(h.all_finished(1));
  {
    std::lock_guard l(h.w.mu);
    CHECK(h.ledger.recorded[id].status == "sent");
  }
  CHECK(h.sent_ids("banned").size() == 2);  // the banned try and the one after the pause

  const auto throttled = sb::new_uuid_v7();
  {
    std::lock_guard l(h.w.mu);
    sb::SendResult r{sb::SendResult::Status::RetryableError, {}, "HTTP 429, Graph error 130429", false};
    r.retry_after_ms = 30;
    r.throttled = true;
    h.provider.answers[throttled] = r;
  }
  h.submit("busy", throttled);
  REQUIRE(h.all_finished(2));
  std::lock_guard l(h.w.mu);
  CHECK(h.ledger.recorded[throttled].status == "failed");  // after the provider attempts
  REQUIRE(h.pacer.backoffs.size() == 2);                    // every retry backed the session off first
  CHECK(h.pacer.backoffs[0].first == "busy");
  CHECK(h.pacer.backoffs[0].second >= 30ms);
}

TEST_CASE("lane core: a lifecycle command runs ahead of its session's sends held by the not-working rule, "
          "which go right after it, in order",
          "[unit][lane][concurrency]") {
  sb::LaneCore::Options o;
  o.hold_poll = 60s;  // a held send looks again only long after the deadline below: the start must free it
  o.hold_max = 300s;
  Harness h(o);
  FakeControl control(h.w, h.ledger);
  h.core->set_session_control(&control);
  const auto first = sb::new_uuid_v7();
  const auto second = sb::new_uuid_v7();
  {
    std::lock_guard l(h.w.mu);
    for (const auto& id : {first, second}) {
      h.ledger.claims[id] = sb::SendClaim{sb::SendClaim::Status::NotWorking, {}, "STOPPED"};
      control.watched.insert(id);
    }
  }
  h.submit("stopped", first);
  h.submit("stopped", second);
  REQUIRE(poll_until([&] { return h.core->stats().held >= 1; }));
  // The start, accepted after both sends (as POST /start after two POST /messages on the high lane).
  sb::SessionCommand start{sb::new_uuid_v7(), h.tenant, "stopped", "start", sb::now_rfc3339()};
  std::vector<sb::ConsumedRecord> batch{{kPart, h.next_offset++, 1, h.tenant, sb::to_json(start).dump()}};
  h.core->on_records(std::move(batch));
  REQUIRE(h.all_finished(3, 5s));
  std::lock_guard l(h.w.mu);
  CHECK(control.executed == std::vector<std::string>{"start"});
  CHECK(h.ledger.recorded[first].status == "sent");
  CHECK(h.ledger.recorded[second].status == "sent");
  std::vector<std::string> order;
  for (const auto& s : h.provider.sends) order.push_back(s.message_id);
  CHECK(order == std::vector<std::string>{first, second});  // once each, in their order
}

TEST_CASE("lane core: a send paced and then held while its session was not WORKING asks the pacer again once it may send, "
          "so the send after it still keeps the gap",
          "[unit][lane][pacing]") {
  sb::LaneCore::Options o;
  o.hold_poll = 20ms;
  Harness h(o, /*pacing=*/true);
  const auto first = sb::new_uuid_v7(), second = sb::new_uuid_v7();
  {
    std::lock_guard l(h.w.mu);
    h.pacer.gap["down"] = 300ms;
    h.ledger.claims[first] = sb::SendClaim{sb::SendClaim::Status::NotWorking, {}, "STARTING"};
  }
  h.submit("down", first);
  h.submit("down", second);
  REQUIRE(poll_until([&] { return h.core->stats().held >= 1; }));
  // The slot the first send took before it was held runs out while the session is down.
  REQUIRE(h.w.wait([&] { return h.pacer.next.count("down") && h.pacer.next["down"] <= sb::EventLoop::Clock::now(); }));
  {
    std::lock_guard l(h.w.mu);
    CHECK(h.provider.sends.empty());
    h.ledger.claims.erase(first);  // WORKING again
  }
  REQUIRE(h.w.wait([&] { return h.provider.sends.size() >= 1; }));
  const auto first_out = sb::EventLoop::Clock::now();
  REQUIRE(h.all_finished(2));
  // With the stale slot the first would have gone out on it and the second at once after it.
  CHECK(sb::EventLoop::Clock::now() - first_out >= 250ms);
  CHECK(h.sent_ids("down") == std::vector<std::string>{first, second});
}
