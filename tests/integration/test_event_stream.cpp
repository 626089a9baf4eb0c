// The real-time event stream (GET /v1/events/stream, /v1/events/ws) driven by independent
// clients: httpx + sseclient-py and websockets from PyPI (tests/tools/stream_client.py, pinned
// in scripts/lib/python.sh), against `switchboard intake` processes on the real broker and
// database. Events are published to sb.events as a worker does (keyed by tenant); every wait
// is on something the client or the server reports, never a sleep.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stack.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/kafka.hpp"

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

fs::path client_script() { return fs::path(__FILE__).parent_path().parent_path() / "tools" / "stream_client.py"; }

std::string python() {
  const char* py = std::getenv("SWITCHBOARD_TEST_PYTHON");
  if (!py || !*py)
    FAIL("SWITCHBOARD_TEST_PYTHON is not set: run through scripts/test, or source scripts/lib/python.sh and run "
         "sb_python_tools (it creates the venv with httpx, sseclient-py and websockets)");
  return py;
}

// One stream_client.py process. A thread reads its stdout lines (JSON) as they come, so the
// client never blocks on a full pipe (it would stop reading its socket and look slow); a line
// on its stdin resumes a paused client. Killed when destroyed.
class StreamClient {
 public:
  explicit StreamClient(std::vector<std::string> args) {
    args.insert(args.begin(), {python(), client_script().string()});
    int in[2], out[2];
    REQUIRE(pipe(in) == 0);
    REQUIRE(pipe(out) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    reader_ = std::thread([this] { read_lines(); });
  }
  ~StreamClient() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    reader_.join();  // EOF once the client is gone
    close(stdin_);
    close(stdout_);
  }
  StreamClient(const StreamClient&) = delete;

  // The next line, or nullopt at the deadline / when the client exited.
  std::optional<json> next(int timeout_ms = 20000) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return taken_ < lines_.size() || eof_; });
    if (taken_ >= lines_.size()) return std::nullopt;
    return lines_[taken_++];
  }

  // Reads until a line of this kind, passing over events; FAILs if none arrives in time.
  json expect(const std::string& kind, int timeout_ms = 20000) {
    while (auto j = next(timeout_ms)) {
      if ((*j)["kind"] == kind) return *j;
      const bool accepted = (*j)["kind"] == "status" && ((*j)["status"] == 200 || (*j)["status"] == 101);
      if (accepted) continue;  // the answer before the stream's messages
      if ((*j)["kind"] != "event" || kind == "event") FAIL_CHECK("expected '" + kind + "', got " + j->dump());
    }
    FAIL("no '" + kind + "' line from the stream client in time; lines so far: " + history());
    return {};
  }

  // The next n events (FAIL on anything else or a timeout).
  std::vector<json> events(std::size_t n, int timeout_ms = 20000) {
    std::vector<json> out;
    while (out.size() < n) {
      auto j = next(timeout_ms);
      if (!j) FAIL("got " + std::to_string(out.size()) + " of " + std::to_string(n) + " events; lines: " + history());
      if ((*j)["kind"] == "event") out.push_back(*j);
      else if ((*j)["kind"] != "done") FAIL("expected events, got " + j->dump());
    }
    return out;
  }

  void resume() { REQUIRE(write(stdin_, "go\n", 3) == 3); }

  std::string history() {
    std::lock_guard lock(mu_);
    std::string s;
    for (std::size_t i = lines_.size() > 40 ? lines_.size() - 40 : 0; i < lines_.size(); ++i) s += lines_[i].dump().substr(0, 300) + "\n";
    return s;
  }

 private:
  void read_lines() {
    std::string pending;
    char buf[65536];
    for (;;) {
      const auto n = read(stdout_, buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<std::size_t>(n));
      std::vector<json> got;
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
        auto j = json::parse(pending.substr(0, nl), nullptr, false);
        if (j.is_discarded()) j = json{{"kind", "garbage"}, {"line", pending.substr(0, nl)}};
        got.push_back(std::move(j));
        pending.erase(0, nl + 1);
      }
      std::lock_guard lock(mu_);
      for (auto& j : got) lines_.push_back(std::move(j));
      cv_.notify_all();
    }
    std::lock_guard lock(mu_);
    eof_ = true;
    cv_.notify_all();
  }

  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> lines_;
  std::size_t taken_ = 0;
  bool eof_ = false;
  std::thread reader_;  // last: it uses the members above
};

// A `switchboard intake` process on its own port.
struct Replica {
  int port;
  sbtest::Child child;
  Replica(sbtest::TestStack& stack, const std::string& label)
      : port(sbtest::free_port()), child(start(stack, label, port)) {
    httplib::Client http("127.0.0.1", port);
    const bool ready = sbtest::eventually([&] {
      auto r = http.Get("/metrics");
      return r && r->status == 200 && r->body.find("sb_intake_stream_ready 1") != std::string::npos;
    }, 30000);
    if (!ready) FAIL("intake " + label + " did not become ready; log:\n" + child.log());
  }
  static sbtest::Child start(sbtest::TestStack& stack, const std::string& label, int port) {
    stack.config.intake.listen = "127.0.0.1:" + std::to_string(port);
    stack.write_config();
    return stack.spawn(label, {"intake"});
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
  std::string ws_url(const std::string& path) const { return "ws://127.0.0.1:" + std::to_string(port) + path; }
  uint64_t metric(const std::string& name) const {
    httplib::Client http("127.0.0.1", port);
    auto r = http.Get("/metrics");
    REQUIRE(r);
    const auto at = r->body.find("\n" + name + " ");
    if (at == std::string::npos) return 0;
    return std::stoull(r->body.substr(at + name.size() + 2));
  }
};

struct Published {
  json event;
  std::string cursor;  // "<partition>-<offset>" as the broker placed it
};

// Publishes one event to sb.events keyed by its tenant, as a worker does.
Published publish(sb::kafka::Producer& producer, const sbtest::TestStack& stack, const std::string& tenant,
                  const std::string& type = "message.sent", const std::string& session = "main", std::size_t pad = 0) {
  json data = {{"message_id", sb::new_uuid_v7()}, {"to", "+15550100"}, {"published_at", unix_now()}};
  if (type == "message.sent") data["provider_message_id"] = "p-1";
  else data["error"] = "rejected";
  if (pad) data["padding"] = std::string(pad, 'x');
  json event = {{"id", sb::new_uuid_v7()}, {"type", type},  {"tenant", tenant},
                {"session", session},      {"occurred_at", sb::now_rfc3339()}, {"data", data}};
  auto r = producer.produce(stack.topic("sb.events"), tenant, event.dump()).get();
  REQUIRE(r.ok());
  return {event, std::to_string(r.partition) + "-" + std::to_string(r.offset)};
}

std::vector<std::string> ids(const std::vector<json>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e["event"]["id"]);
  return out;
}
std::vector<std::string> ids(const std::vector<Published>& published) {
  std::vector<std::string> out;
  for (const auto& p : published) out.push_back(p.event["id"]);
  return out;
}

// Retention at work: the partition's log start moves to `before` (Admin DeleteRecords).
void delete_records_before(const sb::Config& config, const std::string& topic, int32_t partition, int64_t before) {
  auto conf = sb::kafka::make_conf(config.kafka, {});
  char errstr[512];
  sb::kafka::HandlePtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), errstr, sizeof errstr));
  REQUIRE(rk);
  sb::kafka::PartitionListPtr offsets(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(offsets.get(), topic.c_str(), partition)->offset = before;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(offsets.get());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_DeleteRecords(rk.get(), &del, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  REQUIRE(ev);
  CHECK(rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto* result = rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
  REQUIRE(result);
  CHECK(result->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_DeleteRecords_destroy(del);
}

sbtest::TestStack& quiet(sbtest::TestStack& stack) {
  stack.config.log.level = "warn";
  return stack;
}

}  // namespace

TEST_CASE("event stream: SSE and WebSocket clients get their tenant's events live, in order, with Kafka cursors",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_live");
  quiet(stack);
  auto acme = stack.create_tenant("acme");
  auto other = stack.create_tenant("other");
  Replica intake(stack, "intake");
  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}});

  StreamClient sse({"sse", intake.url("/v1/events/stream"), acme.api_key});
  StreamClient ws({"ws", intake.ws_url("/v1/events/ws"), acme.api_key});
  CHECK(sse.expect("status")["content_type"] == "text/event-stream; charset=utf-8");
  CHECK(ws.expect("status")["status"] == 101);
  sse.expect("open");
  ws.expect("open");

  std::vector<Published> mine;
  for (int i = 0; i < 5; ++i) {
    publish(producer, stack, other.id);  // interleaved: never seen by acme's streams
    mine.push_back(publish(producer, stack, acme.id, i % 2 ? "message.failed" : "message.sent"));
  }
  for (auto* client : {&sse, &ws}) {
    const auto got = client->events(5);
    CHECK(ids(got) == ids(mine));
    for (std::size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i]["cursor"] == mine[i].cursor);
      CHECK(got[i]["type"] == mine[i].event["type"]);
      CHECK(got[i]["event"]["tenant"] == acme.id);
    }
  }
}

TEST_CASE("event stream: a client reconnecting to a second replica with Last-Event-ID gets exactly what it missed",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_resume");
  quiet(stack);
  auto acme = stack.create_tenant("acme");
  auto other = stack.create_tenant("other");
  Replica a(stack, "intake-a");
  Replica b(stack, "intake-b");
  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}});

  std::vector<Published> before, missed, after;
  std::string last_cursor;
  {
    StreamClient first({"sse", a.url("/v1/events/stream"), acme.api_key, "--count", "3"});
    first.expect("open");
    for (int i = 0; i < 3; ++i) before.push_back(publish(producer, stack, acme.id));
    const auto got = first.events(3);
    CHECK(ids(got) == ids(before));
    last_cursor = got.back()["cursor"];
    first.expect("done");
  }  // disconnected
  for (int i = 0; i < 7; ++i) {
    missed.push_back(publish(producer, stack, acme.id, "message.sent", i % 2 ? "main" : "support"));
    publish(producer, stack, other.id);
  }

  StreamClient second({"sse", b.url("/v1/events/stream"), acme.api_key, "--last-event-id", last_cursor});
  const auto open = second.expect("open");
  CHECK(open["data"]["after"] == last_cursor);
  const auto replayed = second.events(7);
  CHECK(ids(replayed) == ids(missed));
  for (int i = 0; i < 3; ++i) after.push_back(publish(producer, stack, acme.id));
  const auto live = second.events(3);
  CHECK(ids(live) == ids(after));
  // No gaps or duplicates: the cursors are exactly what the broker assigned, in order.
  std::vector<std::string> cursors;
  for (const auto& e : replayed) cursors.push_back(e["cursor"]);
  for (const auto& e : live) cursors.push_back(e["cursor"]);
  std::vector<std::string> expected;
  for (const auto& p : missed) expected.push_back(p.cursor);
  for (const auto& p : after) expected.push_back(p.cursor);
  CHECK(cursors == expected);
  // Replica b replayed (at least) the missed ones; events published while its replay was
  // still finishing are replayed too, or delivered live — once either way, as checked above.
  CHECK(b.metric("sb_intake_stream_events_replayed_total") >= 7);

  SECTION("the same through ?after= on a WebSocket") {
    StreamClient ws({"ws", a.ws_url("/v1/events/ws?after=" + last_cursor), acme.api_key, "--count", "10"});
    ws.expect("open");
    auto all = ws.events(10);
    std::vector<Published> want = missed;
    want.insert(want.end(), after.begin(), after.end());
    CHECK(ids(all) == ids(want));
  }
}

TEST_CASE("event stream: types and sessions filters, and what bad requests get", "[integration][stream]") {
  sbtest::TestStack stack("stream_filters");
  quiet(stack);
  auto acme = stack.create_tenant("acme", {"main", "support"});
  Replica intake(stack, "intake");
  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}});

  StreamClient failed_support(
      {"sse", intake.url("/v1/events/stream?types=message.failed&sessions=support"), acme.api_key});
  StreamClient family({"ws", intake.ws_url("/v1/events/ws?types=message.*&sessions=main,support"), acme.api_key});
  failed_support.expect("open");
  family.expect("open");
  std::vector<Published> all;
  for (const auto* type : {"message.sent", "message.failed"})
    for (const auto* session : {"main", "support", "other"}) all.push_back(publish(producer, stack, acme.id, type, session));
  const auto got = failed_support.events(1);
  CHECK(got[0]["event"]["id"] == all[4].event["id"]);  // message.failed on support
  const auto fam = family.events(4);
  CHECK(ids(fam) == ids(std::vector<Published>{all[0], all[1], all[3], all[4]}));
  // Nothing else arrives for the narrow filter: the next event it gets is the next match.
  const auto marker = publish(producer, stack, acme.id, "message.failed", "support");
  CHECK(failed_support.events(1)[0]["event"]["id"] == marker.event["id"]);

  httplib::Client http("127.0.0.1", intake.port);
  auto get = [&](const std::string& path, const httplib::Headers& h) {
    auto r = http.Get(path.c_str(), h);
    REQUIRE(r);
    return std::make_pair(r->status, json::parse(r->body, nullptr, false));
  };
  auto [s1, b1] = get("/v1/events/stream?types=message.bogus", sbtest::bearer(acme.api_key));
  CHECK(s1 == 422);
  CHECK(b1["field"] == "types");
  auto [s2, b2] = get("/v1/events/stream", {});
  CHECK(s2 == 401);
  auto [s3, b3] = get("/v1/events/ws", sbtest::bearer(acme.api_key));  // no Upgrade
  CHECK(s3 == 426);
  auto [s4, b4] = get("/v1/events/stream?after=12", sbtest::bearer(acme.api_key));
  CHECK(s4 == 400);
  CHECK(b4["field"] == "after");
  // Browsers cannot set headers on EventSource: ?api_key= authenticates the same way.
  StreamClient by_query({"sse", intake.url("/v1/events/stream?api_key=" + acme.api_key), "not-a-key"});
  CHECK(by_query.expect("status")["status"] == 401);  // the header, when sent, is what counts
}

TEST_CASE("event stream: forged and stale cursors never yield another tenant's events", "[integration][stream]") {
  sbtest::TestStack stack("stream_cursors");
  quiet(stack);
  // Two tenants whose events share a partition (the key decides: murmur2 of the tenant id).
  const int partitions = stack.config.kafka.partitions;
  auto victim = stack.create_tenant("victim");
  const int32_t p = sb::kafka::partition_for_key(victim.id, partitions);
  std::optional<sbtest::TenantInfo> thief, elsewhere;
  for (int i = 0; !thief || !elsewhere; ++i) {
    auto t = stack.create_tenant("t" + std::to_string(i));
    if (sb::kafka::partition_for_key(t.id, partitions) == p) {
      if (!thief) thief = t;
    } else if (!elsewhere) {
      elsewhere = t;
    }
  }
  Replica intake(stack, "intake");
  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}});
  std::vector<Published> secrets;
  for (int i = 0; i < 5; ++i) secrets.push_back(publish(producer, stack, victim.id));
  const auto own = publish(producer, stack, thief->id);
  REQUIRE(std::stoi(own.cursor) == p);

  // A cursor on the shared partition (the victim's own first event's): replay reads the
  // victim's later events and passes over every one; the thief's own event is all it gets.
  const auto forged = secrets.front().cursor;
  StreamClient sse({"sse", intake.url("/v1/events/stream?after=" + forged), thief->api_key});
  sse.expect("open");
  const auto got = sse.events(1);
  CHECK(got[0]["event"]["id"] == own.event["id"]);
  CHECK(got[0]["event"]["tenant"] == thief->id);

  httplib::Client http("127.0.0.1", intake.port);
  auto status_of = [&](const std::string& key, const std::string& cursor) {
    auto r = http.Get(("/v1/events/stream?after=" + cursor).c_str(), sbtest::bearer(key));
    REQUIRE(r);
    return std::make_pair(r->status, json::parse(r->body, nullptr, false));
  };
  // The victim's partition is not elsewhere's: refused outright.
  auto [s1, b1] = status_of(elsewhere->api_key, forged);
  CHECK(s1 == 400);
  CHECK(std::string(b1["error"]).find("not from this tenant's event stream") != std::string::npos);
  // Beyond the end of the partition: not a cursor the stream issued.
  auto [s2, b2] = status_of(thief->api_key, std::to_string(p) + "-999999");
  CHECK(s2 == 400);

  // Retention removes the partition's start: an older cursor gets 410 naming the oldest one.
  const int64_t start = std::stoll(own.cursor.substr(own.cursor.find('-') + 1));
  delete_records_before(stack.config, stack.topic("sb.events"), p, start);
  auto [s3, b3] = status_of(thief->api_key, forged);
  CHECK(s3 == 410);
  CHECK(b3["oldest_cursor"] == own.cursor);
  CHECK(std::string(b3["error"]).find(own.cursor) != std::string::npos);
  // The cursor the error suggests works and replays the oldest event kept.
  StreamClient again({"ws", intake.ws_url("/v1/events/ws?after=" + std::string(b3["resume_after"])), thief->api_key});
  again.expect("open");
  CHECK(again.events(1)[0]["event"]["id"] == own.event["id"]);
}

TEST_CASE("event stream: a client that stops reading is cut off with a reason while a healthy one keeps up",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_slow");
  quiet(stack);
  stack.config.stream.buffer_events = 20;
  auto acme = stack.create_tenant("acme");
  Replica intake(stack, "intake");
  sb::kafka::Producer producer(stack.config.kafka, {{"linger.ms", "0"}});

  StreamClient healthy({"sse", intake.url("/v1/events/stream"), acme.api_key});
  StreamClient stalled({"sse", intake.url("/v1/events/stream"), acme.api_key, "--pause-after", "1"});
  healthy.expect("open");
  stalled.expect("open");
  // Large events fill the socket buffers (several MB on loopback) and then the stream's queue:
  // publish until intake reports the overflow (checked every 50 events).
  const std::size_t pad = 16 * 1024;
  int n = 0;
  for (; n < 5000; ++n) {
    publish(producer, stack, acme.id, "message.sent", "main", pad);
    if (n == 0) stalled.expect("paused");
    if (n % 50 == 49 && intake.metric("sb_intake_stream_overflows_total") == 1) break;
  }
  REQUIRE(intake.metric("sb_intake_stream_overflows_total") == 1);
  // The stalled client reads again: what was already in its socket, then the reason, then EOF.
  stalled.resume();
  json error;
  for (;;) {
    auto j = stalled.next(20000);
    REQUIRE(j);
    if ((*j)["kind"] == "event" || (*j)["kind"] == "resumed") continue;
    REQUIRE((*j)["kind"] == "error");
    error = *j;
    break;
  }
  CHECK(error["data"]["reason"] == "slow_consumer");
  CHECK(std::string(error["data"]["error"]).find("stream.buffer_events") != std::string::npos);
  stalled.expect("closed");

  // The healthy client got every event, promptly, all along: had the stalled one held up the
  // fan-out, it would have got none past the stalled one's buffer. The bound is generous on
  // purpose (a shared 2-core box); the bench measures latency properly.
  std::vector<double> latency_ms;
  for (const auto& e : healthy.events(static_cast<std::size_t>(n + 1)))
    latency_ms.push_back((e["t"].get<double>() - e["event"]["data"]["published_at"].get<double>()) * 1000);
  std::sort(latency_ms.begin(), latency_ms.end());
  const double p50 = latency_ms[latency_ms.size() / 2], p99 = latency_ms[latency_ms.size() * 99 / 100];
  WARN("healthy client, " << n + 1 << " events of 16 KiB while the other stalled: publish-to-receive p50 " << p50
                          << " ms, p99 " << p99 << " ms (Python client)");
  CHECK(p99 < 2000);
  // The healthy one is still served.
  const auto later = publish(producer, stack, acme.id);
  CHECK(healthy.events(1)[0]["event"]["id"] == later.event["id"]);
}

TEST_CASE("event stream: per-tenant connection limit answers 429 and frees a place when a stream closes",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_limit");
  quiet(stack);
  stack.config.stream.max_connections_per_tenant = 2;
  auto acme = stack.create_tenant("acme");
  auto other = stack.create_tenant("other");
  Replica intake(stack, "intake");

  auto one = std::make_unique<StreamClient>(std::vector<std::string>{"sse", intake.url("/v1/events/stream"), acme.api_key});
  StreamClient two({"ws", intake.ws_url("/v1/events/ws"), acme.api_key});
  one->expect("open");
  two.expect("open");
  StreamClient third({"sse", intake.url("/v1/events/stream"), acme.api_key});
  auto refused = third.expect("status");
  CHECK(refused["status"] == 429);
  CHECK(std::string(refused["body"]["error"]).find("stream.max_connections_per_tenant") != std::string::npos);
  StreamClient ws_refused({"ws", intake.ws_url("/v1/events/ws"), acme.api_key});
  CHECK(ws_refused.expect("status")["status"] == 429);
  // Another tenant is not affected.
  StreamClient theirs({"sse", intake.url("/v1/events/stream"), other.api_key});
  theirs.expect("open");
  // A client going away frees its place.
  one.reset();
  REQUIRE(sbtest::eventually([&] { return intake.metric("sb_intake_streams_open") == 2; }, 10000));
  StreamClient fourth({"sse", intake.url("/v1/events/stream"), acme.api_key});
  fourth.expect("open");
}

// Opens SSE streams on `replica` until one is admitted (200), within timeout_ms: a place freed
// elsewhere (a closed stream's lease removed, a dead replica's lease expired) reaches Redis a
// moment later. Each try is a new client; the refused ones must have got 429.
namespace {
std::unique_ptr<StreamClient> open_when_admitted(const Replica& replica, const std::string& key, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    auto c = std::make_unique<StreamClient>(std::vector<std::string>{"sse", replica.url("/v1/events/stream"), key});
    auto status = c->expect("status");
    if (status["status"] == 200) {
      c->expect("open");
      return c;
    }
    REQUIRE(status["status"] == 429);
  }
  FAIL("no stream admitted within " + std::to_string(timeout_ms) + " ms");
  return nullptr;
}
}  // namespace

TEST_CASE("event stream: the per-tenant connection limit holds across replicas, and closed or dead replicas' places come back",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_cluster_limit");
  quiet(stack);
  stack.config.stream.max_connections_per_tenant = 2;
  stack.config.stream.lease_ttl_ms = 1500;  // a killed replica's leases expire within 1.5 s
  auto acme = stack.create_tenant("acme");
  Replica a(stack, "intake-a");
  Replica b(stack, "intake-b");

  auto on_a = std::make_unique<StreamClient>(std::vector<std::string>{"sse", a.url("/v1/events/stream"), acme.api_key});
  on_a->expect("open");
  StreamClient on_b({"ws", b.ws_url("/v1/events/ws"), acme.api_key});
  on_b.expect("open");
  // Two open in the cluster: a third is refused on either replica, each holding one.
  for (const Replica* r : {&a, &b}) {
    StreamClient third({"sse", r->url("/v1/events/stream"), acme.api_key});
    auto refused = third.expect("status");
    CHECK(refused["status"] == 429);
    CHECK(std::string(refused["body"]["error"]).find("across intake replicas") != std::string::npos);
  }
  CHECK(a.metric("sb_intake_stream_lease_fallbacks_total") == 0);

  // Closing the stream on A frees its place for B.
  on_a.reset();
  auto second_on_b = open_when_admitted(b, acme.api_key, 10000);

  // B dies without closing anything: its two leases expire and A gets both places.
  b.child.signal(SIGKILL);
  b.child.wait(10000);
  auto first_on_a = open_when_admitted(a, acme.api_key, 10000);
  auto second_on_a = open_when_admitted(a, acme.api_key, 10000);
  StreamClient over({"sse", a.url("/v1/events/stream"), acme.api_key});
  CHECK(over.expect("status")["status"] == 429);
}

TEST_CASE("event stream: without Redis the connection limit falls back to each replica, said once in the log",
          "[integration][stream]") {
  sbtest::TestStack stack("stream_limit_fallback");
  quiet(stack);
  stack.config.stream.max_connections_per_tenant = 1;
  stack.config.redis.url = "redis://127.0.0.1:" + std::to_string(sbtest::free_port());  // nothing listens there
  auto acme = stack.create_tenant("acme");
  Replica intake(stack, "intake");
  StreamClient one({"sse", intake.url("/v1/events/stream"), acme.api_key});
  one.expect("open");
  for (int i = 0; i < 2; ++i) {
    StreamClient refused({"sse", intake.url("/v1/events/stream"), acme.api_key});
    CHECK(refused.expect("status")["status"] == 429);
  }
  CHECK(intake.metric("sb_intake_stream_lease_fallbacks_total") >= 1);
  const auto log = intake.child.log();
  std::size_t said = 0;
  for (auto at = log.find("stream.leases_unavailable"); at != std::string::npos; at = log.find("stream.leases_unavailable", at + 1)) ++said;
  CHECK(said == 1);
}

TEST_CASE("event stream: CORS for listed origins on the stream and the other /v1 routes, none by default",
          "[integration][stream][cors]") {
  sbtest::TestStack stack("stream_cors");
  quiet(stack);
  auto acme = stack.create_tenant("acme");
  const std::string app = "https://app.example.com";
  stack.config.intake.cors_allowed_origins = app + ", http://localhost:3000";
  Replica cors(stack, "intake-cors");
  stack.config.intake.cors_allowed_origins = "";
  Replica plain(stack, "intake-plain");

  httplib::Client http("127.0.0.1", cors.port);
  // A browser's preflight for an EventSource with a Last-Event-ID (or a fetch with a key).
  auto pre = http.Options("/v1/events/stream", {{"Origin", app}, {"Access-Control-Request-Method", "GET"},
                                                {"Access-Control-Request-Headers", "authorization, last-event-id"}});
  REQUIRE(pre);
  CHECK(pre->status == 204);
  CHECK(pre->get_header_value("Access-Control-Allow-Origin") == app);
  CHECK(pre->get_header_value("Access-Control-Allow-Headers").find("Last-Event-ID") != std::string::npos);
  CHECK(pre->get_header_value("Access-Control-Allow-Methods").find("GET") != std::string::npos);
  CHECK(pre->get_header_value("Vary").find("Origin") != std::string::npos);
  auto foreign = http.Options("/v1/events/stream", {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "GET"}});
  REQUIRE(foreign);
  CHECK(foreign->status == 403);
  CHECK_FALSE(foreign->has_header("Access-Control-Allow-Origin"));
  CHECK(foreign->body.find("intake.cors_allowed_origins") != std::string::npos);

  // The stream's head: the origin echoed exactly, Vary: Origin; another origin gets no grant.
  StreamClient sse({"sse", cors.url("/v1/events/stream"), acme.api_key, "--origin", app});
  auto head = sse.expect("status");
  CHECK(head["status"] == 200);
  CHECK(head["cors"]["access-control-allow-origin"] == app);
  CHECK(std::string(head["cors"]["vary"]).find("Origin") != std::string::npos);
  sse.expect("open");
  StreamClient other_origin({"sse", cors.url("/v1/events/stream"), acme.api_key, "--origin", "https://evil.example"});
  auto other_head = other_origin.expect("status");
  CHECK(other_head["status"] == 200);
  CHECK_FALSE(other_head["cors"].contains("access-control-allow-origin"));

  // Any other /v1 answer, errors included, carries them too.
  auto msg = http.Get("/v1/messages/00000000-0000-0000-0000-000000000000",
                      {{"Origin", "http://localhost:3000"}, {"Authorization", "Bearer " + acme.api_key}});
  REQUIRE(msg);
  CHECK(msg->status == 404);
  CHECK(msg->get_header_value("Access-Control-Allow-Origin") == "http://localhost:3000");
  CHECK(msg->get_header_value("Access-Control-Expose-Headers").find("Retry-After") != std::string::npos);

  // Default (no origins listed): no CORS at all.
  httplib::Client none("127.0.0.1", plain.port);
  auto no_pre = none.Options("/v1/events/stream", {{"Origin", app}, {"Access-Control-Request-Method", "GET"}});
  REQUIRE(no_pre);
  CHECK(no_pre->status == 404);
  auto no_grant = none.Get("/v1/messages/00000000-0000-0000-0000-000000000000",
                           {{"Origin", app}, {"Authorization", "Bearer " + acme.api_key}});
  REQUIRE(no_grant);
  CHECK_FALSE(no_grant->has_header("Access-Control-Allow-Origin"));
  CHECK_FALSE(no_grant->has_header("Vary"));
}
