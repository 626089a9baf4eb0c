// `switchboard simulator` playing the two real provider shapes over real HTTP: WAHA's engine API
// (sessions, rotating QR codes, sendText, signed webhooks) and the WhatsApp Cloud API's Graph
// paths (sends, error codes, the per-number limit, signed statuses, the hub.challenge handshake),
// plus its control API. The simulator runs in-process on a free port; its callbacks go to a
// local HTTP receiver. Signatures are checked by an independent HMAC (Python's hmac module), QR
// PNGs by an independent reader (zbarimg). Every wait is on an arrival, never a fixed sleep.
// No Kafka/PostgreSQL/Redis needed.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "switchboard/core/base64.hpp"
#include "switchboard/core/http_async.hpp"
#include "switchboard/core/http_client.hpp"
#include "switchboard/core/http_server.hpp"
#include "simulator_thread.hpp"
#include "switchboard/workers/simulator.hpp"
#include "python_tool.hpp"

using sbtest::shell_quote;

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
constexpr int kWaitMs = 10000;  // generous: parallel ctest runs on a shared machine are slow


std::string temp_file(const std::string& contents) {
  char tmpl[] = "/tmp/sb-sim-test-XXXXXX";
  const int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(tmpl, std::ios::binary) << contents;
  return tmpl;
}

// Runs a command, returns its stdout (trailing newline trimmed) and exit status.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The independent oracle: hex HMAC of `body` under `key` computed by Python's hmac module.
std::string python_hmac(const std::string& digest, const std::string& key, const std::string& body) {
  const std::string body_path = temp_file(body);
  const std::string key_path = temp_file(key);
  auto [rc, out] = run("python3 -c " +
                       shell_quote("import hmac, hashlib, sys; print(hmac.new(open(sys.argv[1], 'rb').read(), "
                                   "open(sys.argv[2], 'rb').read(), getattr(hashlib, sys.argv[3])).hexdigest())") +
                       " " + key_path + " " + body_path + " " + digest + " 2>&1");
  fs::remove(body_path);
  fs::remove(key_path);
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

std::string base64_decode(const std::string& in) {
  std::string out, why;
  if (!sb::base64_decode(in, out, why)) FAIL("QR data is not base64: " + why);
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

// A PNG: the signature, then IHDR first with a square size; decoded by zbarimg to `value`.
void check_qr_png(const std::string& png, const std::string& value) {
  REQUIRE(png.size() > 33);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(be32(png, 16) == be32(png, 20));
  CHECK(be32(png, 16) >= 21 * 8);
  const std::string path = temp_file(png);
  // stderr apart: zbarimg chats there (e.g. about D-Bus) while stdout has just the value.
  auto [rc, out] = run("zbarimg --raw -q " + path + " 2>/dev/null");
  fs::remove(path);
  INFO("zbarimg (Debian zbar-tools, installed by scripts/lib/install.sh): " << out);
  REQUIRE(rc == 0);
  CHECK(out == value);
}

// A callback that reached the receiver.
struct Hit {
  std::string method, path, target, body;
  std::vector<std::pair<std::string, std::string>> headers;
  json doc;  // body parsed (null if not JSON)
  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
    return "";
  }
};

// The local HTTP receiver standing for intake: records every request, answers 200 unless told
// to fail the next N, and answers Meta's hub.challenge when the verify token matches.
class ShapesReceiver {
 public:
  explicit ShapesReceiver(std::string verify_token = "") : verify_token_(std::move(verify_token)) {
    server_.async_route("POST", ".*", [this](const sb::http::Request& req, sb::http::Responder respond) {
      Hit h{req.method, req.path, req.target, req.body, req.headers, json()};
      try {
        h.doc = json::parse(req.body);
      } catch (...) {
      }
      int status = 200;
      {
        std::lock_guard lock(mu_);
        ++attempts_;
        if (fail_next_ > 0) {
          --fail_next_;
          status = 500;
        } else {
          hits_.push_back(std::move(h));
        }
      }
      cv_.notify_all();
      sb::http::Response res;
      res.status = status;
      respond(std::move(res));
    });
    server_.async_route("GET", ".*", [this](const sb::http::Request& req, sb::http::Responder respond) {
      sb::http::Response res;
      if (req.get_param_value("hub.mode") == "subscribe" && req.get_param_value("hub.verify_token") == verify_token_) {
        res.status = 200;
        res.set_content(req.get_param_value("hub.challenge"), "text/plain");
      } else {
        res.status = 403;
        res.set_content("verify token mismatch", "text/plain");
      }
      respond(std::move(res));
    });
    port_ = server_.bind_listen("127.0.0.1:0", "receiver");
    server_.start();
  }
  ~ShapesReceiver() { server_.stop(); }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  void fail_next(int n) {
    std::lock_guard lock(mu_);
    fail_next_ = n;
  }
  int attempts() {
    std::lock_guard lock(mu_);
    return attempts_;
  }
  // Waits until pred holds over the accepted callbacks (woken by each arrival).
  bool wait_for(const std::function<bool(const std::vector<Hit>&)>& pred, int timeout_ms = kWaitMs) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return pred(hits_); });
  }
  std::vector<Hit> hits() {
    std::lock_guard lock(mu_);
    return hits_;
  }

 private:
  std::string verify_token_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Hit> hits_;
  int fail_next_ = 0;
  int attempts_ = 0;
  sb::http::Server server_{[] {
    sb::http::ServerOptions o;
    o.io_threads = 1;
    o.blocking_threads = 1;
    return o;
  }()};
  int port_ = 0;
};

// Engine webhooks of one session and event, in arrival order.
std::vector<Hit> engine_events(const std::vector<Hit>& hits, const std::string& session, const std::string& event) {
  std::vector<Hit> out;
  for (const auto& h : hits)
    if (h.doc.is_object() && h.doc.value("session", "") == session && h.doc.value("event", "") == event) out.push_back(h);
  return out;
}

std::vector<std::string> statuses_of(const std::vector<Hit>& hits, const std::string& session) {
  std::vector<std::string> out;
  for (const auto& h : engine_events(hits, session, "session.status")) out.push_back(h.doc["payload"]["status"]);
  return out;
}

size_t count_status(const std::vector<Hit>& hits, const std::string& session, const std::string& status) {
  size_t n = 0;
  for (const auto& s : statuses_of(hits, session)) n += s == status;
  return n;
}

// The simulator on its own thread, with a client for calling it.
class RunningSimulator : public sbtest::SimulatorThread {
 public:
  using SimulatorThread::SimulatorThread;

  struct Answer {
    long status = 0;
    std::string body;
    std::string content_type;
    json doc;
  };
  Answer call(const std::string& method, const std::string& path, const std::string& body = "",
              std::vector<std::pair<std::string, std::string>> headers = {}) {
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    const auto r = client_.request(method, url(path), body, headers);
    INFO(method << " " << path << ": " << r.error);
    REQUIRE(r.transport_ok());
    Answer a{r.status, r.body, "", json()};
    for (const auto& [k, v] : r.headers)
      if (k == "content-type") a.content_type = v;
    try {
      a.doc = json::parse(r.body);
    } catch (...) {
    }
    return a;
  }
  Answer post(const std::string& path, const json& body, std::vector<std::pair<std::string, std::string>> headers = {}) {
    return call("POST", path, body.dump(), std::move(headers));
  }
  Answer get(const std::string& path, std::vector<std::pair<std::string, std::string>> headers = {}) {
    return call("GET", path, "", std::move(headers));
  }

 private:
  sb::HttpClient client_{10000};
};

sb::SimulatorConfig sim_config() {
  sb::SimulatorConfig c;
  c.listen = "127.0.0.1:0";
  c.latency_ms = 0;
  c.latency_jitter_ms = 0;
  c.delivered_delay_ms = 30;
  c.read_delay_ms = 30;
  c.callback_backoff_ms = 20;
  c.engine.start_delay_ms = 30;
  c.engine.qr_rotate_ms = 600000;  // no rotation unless a test asks for it
  return c;
}

json webhook(const ShapesReceiver& r, const std::string& key) {
  return {{"url", r.url("/waha")}, {"events", {"session.status", "message", "message.ack"}}, {"hmac", {{"key", key}}}};
}

const std::vector<std::pair<std::string, std::string>> kKey = {{"X-Api-Key", "engine-key"}};

}  // namespace

TEST_CASE("simulator engine: WAHA session lifecycle, QR pairing, sendText acks, inbound, disconnect, logout, delete",
          "[integration][simulator]") {
  ShapesReceiver receiver;
  auto config = sim_config();
  config.engine.api_key = "engine-key";
  RunningSimulator sim(config);

  // The API key guards every /api/* path.
  CHECK(sim.get("/api/sessions").status == 401);
  CHECK(sim.get("/api/sessions", {{"X-Api-Key", "wrong"}}).status == 401);
  CHECK(sim.post("/api/sessions", {{"name", "s1"}}).status == 401);

  auto created = sim.post("/api/sessions", {{"name", "s1"}, {"config", {{"webhooks", {webhook(receiver, "hook-secret")}}}}, {"start", true}}, kKey);
  REQUIRE(created.status == 201);
  CHECK(created.doc["name"] == "s1");
  CHECK(created.doc["status"] == "STARTING");
  CHECK(created.doc["me"].is_null());
  CHECK(created.doc["engine"]["engine"] == "SIMULATOR");
  CHECK(sim.post("/api/sessions", {{"name", "s1"}}, kKey).status == 422);
  CHECK(sim.post("/api/sessions", {{"name", 5}}, kKey).status == 400);
  CHECK(sim.call("POST", "/api/sessions", "{not json", kKey).status == 400);

  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "SCAN_QR_CODE") >= 1; }));
  CHECK(statuses_of(receiver.hits(), "s1") == std::vector<std::string>{"STARTING", "SCAN_QR_CODE"});

  // The QR in its three forms; the PNG is a real QR code of the raw value.
  auto raw = sim.get("/api/s1/auth/qr?format=raw", kKey);
  REQUIRE(raw.status == 200);
  const std::string qr = raw.doc["value"];
  CHECK(qr.rfind("2@", 0) == 0);
  auto as_json = sim.get("/api/s1/auth/qr", {{"X-Api-Key", "engine-key"}, {"Accept", "application/json"}});
  REQUIRE(as_json.status == 200);
  CHECK(as_json.doc["mimetype"] == "image/png");
  check_qr_png(base64_decode(as_json.doc["data"]), qr);
  auto image = sim.get("/api/s1/auth/qr", kKey);
  REQUIRE(image.status == 200);
  CHECK(image.content_type == "image/png");
  check_qr_png(image.body, qr);

  // Not WORKING yet: sendText is refused the way WAHA refuses it.
  auto early = sim.post("/api/sendText", {{"session", "s1"}, {"chatId", "4915112345678@c.us"}, {"text", "hi"}}, kKey);
  CHECK(early.status == 422);
  CHECK(early.doc["status"] == "SCAN_QR_CODE");
  CHECK(early.doc["expected"] == json::array({"WORKING"}));

  // Scanning pairs the session: WORKING, with an account.
  CHECK(sim.post("/sim/scan", {{"qr", "2@not-shown"}}).status == 404);
  auto scanned = sim.post("/sim/scan", {{"qr", qr}});
  REQUIRE(scanned.status == 200);
  CHECK(scanned.doc["session"] == "s1");
  const std::string account = scanned.doc["account"];
  CHECK(std::regex_match(account, std::regex("[0-9]{11}")));
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "WORKING") >= 1; }));
  auto session = sim.get("/api/sessions/s1", kKey);
  CHECK(session.doc["status"] == "WORKING");
  CHECK(session.doc["me"]["id"] == account + "@c.us");
  CHECK(sim.get("/api/s1/auth/qr", kKey).status == 422);
  CHECK(sim.get("/api/sessions/s1", kKey).doc["config"]["webhooks"][0]["url"] == receiver.url("/waha"));

  // sendText: the message, then acks SERVER, DEVICE, READ in that order.
  CHECK(sim.post("/api/sendText", {{"session", "s1"}, {"chatId", "491511"}, {"text", "x"}}, kKey).status == 400);
  CHECK(sim.post("/api/sendText", {{"session", "s1"}, {"text", "x"}}, kKey).status == 400);
  CHECK(sim.post("/api/sendText", {{"session", "nope"}, {"chatId", "4915112345678@c.us"}, {"text", "x"}}, kKey).status == 404);
  auto sent = sim.post("/api/sendText", {{"session", "s1"}, {"chatId", "4915112345678@c.us"}, {"text", "hello"}}, kKey);
  REQUIRE(sent.status == 201);
  const std::string id = sent.doc["id"];
  CHECK(std::regex_match(id, std::regex("true_4915112345678@c\\.us_[0-9A-F]{20}")));
  CHECK(sent.doc["from"] == account + "@c.us");
  CHECK(sent.doc["to"] == "4915112345678@c.us");
  CHECK(sent.doc["body"] == "hello");
  CHECK(sent.doc["fromMe"] == true);
  REQUIRE(receiver.wait_for([](const auto& h) { return engine_events(h, "s1", "message.ack").size() >= 3; }));
  auto acks = engine_events(receiver.hits(), "s1", "message.ack");
  REQUIRE(acks.size() == 3);
  for (int i = 0; i < 3; ++i) {
    const auto& p = acks[i].doc["payload"];
    CHECK(p["id"] == id);
    CHECK(p["ack"] == i + 1);
    CHECK(p["ackName"] == std::vector<std::string>{"SERVER", "DEVICE", "READ"}[i]);
    CHECK(p["from"] == account + "@c.us");
    CHECK(p["to"] == "4915112345678@c.us");
    CHECK(p["fromMe"] == true);
  }
  auto log = sim.get("/sim/log?session=s1");
  REQUIRE(log.doc["sends"].size() == 1);
  CHECK(log.doc["sends"][0]["shape"] == "engine");
  CHECK(log.doc["sends"][0]["text"] == "hello");
  CHECK(log.doc["sends"][0]["provider_message_id"] == id);

  // Inbound: a "message" webhook from the sender to our account.
  CHECK(sim.post("/sim/inbound", {{"to", "10000000000"}, {"from", "4915100000001"}, {"text", "yo"}}).status == 404);
  auto in = sim.post("/sim/inbound", {{"to", account}, {"from", "4915100000001"}, {"text", "hi there"}});
  REQUIRE(in.status == 200);
  REQUIRE(receiver.wait_for([](const auto& h) { return !engine_events(h, "s1", "message").empty(); }));
  const auto msg = engine_events(receiver.hits(), "s1", "message").at(0).doc;
  CHECK(msg["payload"]["from"] == "4915100000001@c.us");
  CHECK(msg["payload"]["to"] == account + "@c.us");
  CHECK(msg["payload"]["body"] == "hi there");
  CHECK(msg["payload"]["fromMe"] == false);
  CHECK(msg["payload"]["id"] == in.doc["id"]);
  CHECK(std::regex_match(msg["payload"]["id"].get<std::string>(), std::regex("false_4915100000001@c\\.us_[0-9A-F]+")));

  // Every envelope is WAHA's, and every signature verifies under an independent HMAC-SHA512.
  for (const auto& h : receiver.hits()) {
    CHECK(std::regex_match(h.doc["id"].get<std::string>(), std::regex("evt_[0-9A-HJKMNP-TV-Z]{26}")));
    CHECK(h.doc["engine"] == "SIMULATOR");
    CHECK(h.doc["timestamp"].is_number_integer());
    CHECK(h.header("X-Webhook-Timestamp") == std::to_string(h.doc["timestamp"].get<int64_t>()));
    CHECK(!h.header("X-Webhook-Request-Id").empty());
    CHECK(h.header("Content-Type") == "application/json");
    CHECK(h.header("X-Webhook-Hmac-Algorithm") == "sha512");
    CHECK(h.header("X-Webhook-Hmac") == python_hmac("sha512", "hook-secret", h.body));
  }

  // The phone unlinks the device: SCAN_QR_CODE with a new QR; scanning again gives a new pairing.
  CHECK(sim.post("/sim/disconnect", {{"account", account}}).status == 200);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "SCAN_QR_CODE") >= 2; }));
  CHECK(statuses_of(receiver.hits(), "s1") ==
        std::vector<std::string>{"STARTING", "SCAN_QR_CODE", "WORKING", "STARTING", "SCAN_QR_CODE"});
  CHECK(sim.get("/api/sessions/s1", kKey).doc["me"].is_null());
  const std::string qr2 = sim.get("/api/s1/auth/qr?format=raw", kKey).doc["value"];
  CHECK(qr2 != qr);
  CHECK(sim.post("/sim/scan", {{"qr", qr}}).status == 404);  // the old QR is gone
  auto rescanned = sim.post("/sim/scan", {{"qr", qr2}});
  REQUIRE(rescanned.status == 200);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "WORKING") >= 2; }));

  // stop keeps the pairing (start → WORKING without a QR); logout drops it.
  CHECK(sim.post("/api/sessions/s1/stop", json::object(), kKey).doc["status"] == "STOPPED");
  CHECK(sim.post("/api/sessions/s1/stop", json::object(), kKey).status == 201);  // idempotent
  CHECK(sim.get("/api/sessions", kKey).doc.empty());                  // STOPPED ones need all=true
  CHECK(sim.get("/api/sessions?all=true", kKey).doc.size() == 1);
  CHECK(sim.post("/api/sessions/s1/start", json::object(), kKey).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "WORKING") >= 3; }));
  CHECK(sim.get("/api/sessions/s1", kKey).doc["me"]["id"] == rescanned.doc["account"].get<std::string>() + "@c.us");
  auto logged_out = sim.post("/api/sessions/s1/logout", json::object(), kKey);
  CHECK(logged_out.status == 201);
  CHECK(logged_out.doc["status"] == "STOPPED");
  CHECK(logged_out.doc["me"].is_null());
  CHECK(sim.post("/api/sessions/s1/start", json::object(), kKey).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "SCAN_QR_CODE") >= 3; }));

  // Restart is stop + start; delete removes it.
  CHECK(sim.post("/api/sessions/s1/restart", json::object(), kKey).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "s1", "SCAN_QR_CODE") >= 4; }));
  CHECK(sim.call("DELETE", "/api/sessions/s1", "", kKey).status == 200);
  CHECK(sim.get("/api/sessions/s1", kKey).status == 404);
  CHECK(sim.call("DELETE", "/api/sessions/s1", "", kKey).status == 404);
  CHECK(sim.post("/api/sessions/s1/start", json::object(), kKey).status == 404);
  CHECK(sim.get("/api/s1/auth/qr", kKey).status == 404);

  // Lifetimes on this node: every span closed, none overlapping.
  auto spans = sim.get("/sim/sessions/log").doc;
  REQUIRE(spans.size() >= 4);
  int64_t last_stop = 0;
  for (const auto& s : spans) {
    CHECK(s["session"] == "s1");
    CHECK(s["node"] == "sim");
    REQUIRE(s["stopped_at_ms"].is_number_integer());
    CHECK(s["started_at_ms"].get<int64_t>() >= last_stop);
    last_stop = s["stopped_at_ms"];
  }
}

TEST_CASE("simulator engine: the QR rotates and every rotation re-emits SCAN_QR_CODE", "[integration][simulator]") {
  ShapesReceiver receiver;
  auto config = sim_config();
  config.engine.qr_rotate_ms = 250;
  RunningSimulator sim(config);
  REQUIRE(sim.post("/api/sessions", {{"name", "rot"}, {"config", {{"webhooks", {{{"url", receiver.url("/w")}, {"events", {"*"}}}}}}}}).status == 201);

  // The value changes only with a rotation, each announced: wait for announcement k, read the
  // value, until three different values were shown (a read may lag, never lead).
  std::vector<std::string> values;
  for (size_t k = 1; values.size() < 3 && k <= 8; ++k) {
    REQUIRE(receiver.wait_for([k](const auto& h) { return count_status(h, "rot", "SCAN_QR_CODE") >= k; }));
    auto raw = sim.get("/api/rot/auth/qr?format=raw");
    REQUIRE(raw.status == 200);
    if (values.empty() || values.back() != raw.doc["value"]) values.push_back(raw.doc["value"]);
  }
  REQUIRE(values.size() == 3);
  CHECK(values[0] != values[2]);
  CHECK(receiver.hits()[0].header("X-Webhook-Hmac").empty());  // no key configured: unsigned

  // A rotated-away value pairs nothing; the current one does, and rotation stops.
  CHECK(sim.post("/sim/scan", {{"qr", values[0]}}).status == 404);
  std::string current = sim.get("/api/rot/auth/qr?format=raw").doc["value"];
  auto scanned = sim.post("/sim/scan", {{"qr", current}});
  if (scanned.status == 404) {  // it rotated between the read and the scan: take the next one
    current = sim.get("/api/rot/auth/qr?format=raw").doc["value"];
    scanned = sim.post("/sim/scan", {{"qr", current}});
  }
  REQUIRE(scanned.status == 200);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "rot", "WORKING") == 1; }));
}

TEST_CASE("simulator engine: webhooks are retried until accepted and stay in order per session", "[integration][simulator]") {
  ShapesReceiver receiver;
  receiver.fail_next(3);
  RunningSimulator sim(sim_config());
  REQUIRE(sim.post("/api/sessions", {{"name", "r1"}, {"config", {{"webhooks", {webhook(receiver, "k")}}}}}).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "r1", "SCAN_QR_CODE") >= 1; }));
  CHECK(receiver.attempts() == 3 + 2);  // STARTING refused three times, then both accepted
  CHECK(statuses_of(receiver.hits(), "r1") == std::vector<std::string>{"STARTING", "SCAN_QR_CODE"});
}

TEST_CASE("simulator engine: sends fail at failure_rate and a banned account's session is FAILED", "[integration][simulator]") {
  ShapesReceiver receiver;
  auto config = sim_config();
  config.failure_rate = 1.0;
  RunningSimulator sim(config);
  REQUIRE(sim.post("/api/sessions", {{"name", "b1"}, {"config", {{"webhooks", {webhook(receiver, "k")}}}}}).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "b1", "SCAN_QR_CODE") >= 1; }));
  auto account = sim.post("/sim/scan", {{"qr", sim.get("/api/b1/auth/qr?format=raw").doc["value"]}}).doc["account"].get<std::string>();
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "b1", "WORKING") >= 1; }));
  auto failed = sim.post("/api/sendText", {{"session", "b1"}, {"chatId", "15550000000@c.us"}, {"text", "x"}});
  CHECK(failed.status == 500);
  CHECK(failed.doc["error"] == "simulated failure");
  CHECK(sim.get("/sim/log?session=b1").doc["sends"].empty());

  CHECK(sim.post("/sim/ban", {{"account", "19999999999"}}).status == 404);
  CHECK(sim.post("/sim/ban", {{"account", account}}).status == 200);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "b1", "FAILED") >= 1; }));
  auto refused = sim.post("/api/sendText", {{"session", "b1"}, {"chatId", "15550000000@c.us"}, {"text", "x"}});
  CHECK(refused.status == 422);
  CHECK(refused.doc["status"] == "FAILED");
  // Restarting doesn't lift a ban: the stored auth belongs to a banned account.
  CHECK(sim.post("/api/sessions/b1/restart", json::object()).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "b1", "FAILED") >= 2; }));
}

TEST_CASE("simulator engine: two simulators sharing an auth_store resume each other's pairings", "[integration][simulator]") {
  const fs::path dir = fs::temp_directory_path() / ("sb-sim-auth-" + std::to_string(getpid()) + "-" + std::to_string(rand()));
  ShapesReceiver receiver;
  auto config_a = sim_config();
  config_a.auth_store = dir.string();
  config_a.name = "node-a";
  auto config_b = config_a;
  config_b.name = "node-b";
  RunningSimulator a(config_a);
  RunningSimulator b(config_b);
  const json body = {{"name", "shared"}, {"config", {{"webhooks", {webhook(receiver, "k")}}}}};

  REQUIRE(a.post("/api/sessions", body).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "shared", "SCAN_QR_CODE") >= 1; }));
  auto scanned = a.post("/sim/scan", {{"qr", a.get("/api/shared/auth/qr?format=raw").doc["value"]}});
  REQUIRE(scanned.status == 200);
  const std::string account = scanned.doc["account"];
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "shared", "WORKING") >= 1; }));
  CHECK(b.post("/sim/scan", {{"qr", "anything"}}).status == 404);  // b has no such session showing a QR

  // Moved: stopped on a, started on b from the shared auth: WORKING without a QR.
  REQUIRE(a.post("/api/sessions/shared/stop", json::object()).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "shared", "STOPPED") >= 1; }));
  auto on_b = b.post("/api/sessions", body);
  REQUIRE(on_b.status == 201);
  CHECK(on_b.doc["me"]["id"] == account + "@c.us");
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "shared", "WORKING") >= 2; }));
  CHECK(statuses_of(receiver.hits(), "shared") ==
        std::vector<std::string>{"STARTING", "SCAN_QR_CODE", "WORKING", "STOPPED", "STARTING", "WORKING"});
  CHECK(b.get("/api/sessions/shared").doc["me"]["id"] == account + "@c.us");
  auto sent = b.post("/api/sendText", {{"session", "shared"}, {"chatId", "15550001111@c.us"}, {"text", "from b"}});
  CHECK(sent.status == 201);
  CHECK(sent.doc["from"] == account + "@c.us");

  // The two nodes' lifetimes of the session don't overlap.
  auto spans_a = a.get("/sim/sessions/log").doc;
  auto spans_b = b.get("/sim/sessions/log").doc;
  REQUIRE(spans_a.size() == 1);
  REQUIRE(spans_b.size() == 1);
  CHECK(spans_a[0]["node"] == "node-a");
  CHECK(spans_b[0]["node"] == "node-b");
  REQUIRE(spans_a[0]["stopped_at_ms"].is_number_integer());
  CHECK(spans_b[0]["stopped_at_ms"].is_null());
  CHECK(spans_a[0]["stopped_at_ms"].get<int64_t>() <= spans_b[0]["started_at_ms"].get<int64_t>());

  // Logout on b drops the pairing for a too: starting there shows a QR.
  REQUIRE(b.post("/api/sessions/shared/logout", json::object()).status == 201);
  REQUIRE(a.post("/api/sessions/shared/start", json::object()).status == 201);
  REQUIRE(receiver.wait_for([](const auto& h) { return count_status(h, "shared", "SCAN_QR_CODE") >= 2; }));
  fs::remove_all(dir);
}

namespace {

std::vector<Hit> cloud_statuses(const std::vector<Hit>& hits, const std::string& wamid) {
  std::vector<Hit> out;
  for (const auto& h : hits) {
    if (!h.doc.is_object() || h.path != "/cloud") continue;
    const auto& value = h.doc["entry"][0]["changes"][0]["value"];
    if (value.contains("statuses") && value["statuses"][0]["id"] == wamid) out.push_back(h);
  }
  return out;
}

json text_message(const std::string& to, const std::string& body = "hello") {
  return {{"messaging_product", "whatsapp"}, {"recipient_type", "individual"}, {"to", to}, {"type", "text"}, {"text", {{"body", body}}}};
}

sb::SimulatorConfig cloud_config(const ShapesReceiver& receiver) {
  auto c = sim_config();
  c.cloud_api.access_token = "graph-token";
  c.cloud_api.app_secret = "app-secret";
  c.cloud_api.verify_token = "verify-me";
  c.cloud_api.webhook_url = receiver.url("/cloud");
  return c;
}

const std::vector<std::pair<std::string, std::string>> kBearer = {{"Authorization", "Bearer graph-token"}};

}  // namespace

TEST_CASE("simulator cloud_api: Graph sends, signed statuses sent-delivered-read, inbound, error codes", "[integration][simulator]") {
  ShapesReceiver receiver;
  RunningSimulator sim(cloud_config(receiver));

  // The number's "account": deterministic display digits.
  auto number = sim.get("/v21.0/106540352242922", kBearer);
  REQUIRE(number.status == 200);
  CHECK(number.doc["id"] == "106540352242922");
  const std::string display = number.doc["display_phone_number"];
  CHECK(std::regex_match(display, std::regex("[0-9]{11}")));
  CHECK(number.doc["quality_rating"] == "GREEN");
  CHECK(sim.get("/v21.0/106540352242922", kBearer).doc["display_phone_number"] == display);

  // Auth: Graph's OAuthException 190.
  for (const auto& headers : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {}, {{"Authorization", "Bearer wrong"}}, {{"Authorization", "graph-token"}}}) {
    auto denied = sim.post("/v21.0/106540352242922/messages", text_message("4915112345678"), headers);
    CHECK(denied.status == 401);
    CHECK(denied.doc["error"]["code"] == 190);
    CHECK(denied.doc["error"]["type"] == "OAuthException");
    CHECK(denied.doc["error"]["fbtrace_id"].is_string());
  }
  // Malformed: code 100.
  for (const auto& bad : {json{{"to", "4915112345678"}}, text_message("+49 151"), json{{"messaging_product", "whatsapp"}, {"to", "49151"}, {"type", "image"}},
                          json{{"messaging_product", "whatsapp"}, {"to", "49151"}, {"type", "text"}, {"text", {{"body", 3}}}}}) {
    auto rejected = sim.post("/v21.0/106540352242922/messages", bad, kBearer);
    CHECK(rejected.status == 400);
    CHECK(rejected.doc["error"]["code"] == 100);
  }
  CHECK(sim.call("POST", "/v21.0/106540352242922/messages", "{", kBearer).status == 400);

  auto sent = sim.post("/v21.0/106540352242922/messages", text_message("4915112345678", "hi cloud"), kBearer);
  REQUIRE(sent.status == 200);
  CHECK(sent.doc["messaging_product"] == "whatsapp");
  CHECK(sent.doc["contacts"][0]["input"] == "4915112345678");
  CHECK(sent.doc["contacts"][0]["wa_id"] == "4915112345678");
  const std::string wamid = sent.doc["messages"][0]["id"];
  CHECK(wamid.rfind("wamid.", 0) == 0);
  REQUIRE(receiver.wait_for([&](const auto& h) { return cloud_statuses(h, wamid).size() >= 3; }));
  auto statuses = cloud_statuses(receiver.hits(), wamid);
  REQUIRE(statuses.size() == 3);
  for (int i = 0; i < 3; ++i) {
    const auto& doc = statuses[i].doc;
    CHECK(doc["object"] == "whatsapp_business_account");
    CHECK(doc["entry"][0]["changes"][0]["field"] == "messages");
    const auto& value = doc["entry"][0]["changes"][0]["value"];
    CHECK(value["messaging_product"] == "whatsapp");
    CHECK(value["metadata"]["phone_number_id"] == "106540352242922");
    CHECK(value["metadata"]["display_phone_number"] == display);
    CHECK(value["statuses"][0]["status"] == std::vector<std::string>{"sent", "delivered", "read"}[i]);
    CHECK(value["statuses"][0]["recipient_id"] == "4915112345678");
    CHECK(std::regex_match(value["statuses"][0]["timestamp"].get<std::string>(), std::regex("[0-9]{10}")));
  }
  auto log = sim.get("/sim/log?phone_number_id=106540352242922").doc["sends"];
  REQUIRE(log.size() == 1);
  CHECK(log[0]["shape"] == "cloud_api");
  CHECK(log[0]["provider_message_id"] == wamid);
  CHECK(log[0]["to"] == "4915112345678");

  // Inbound to the number's account.
  auto in = sim.post("/sim/inbound", {{"to", display}, {"from", "4915100000002"}, {"text", "hey"}});
  REQUIRE(in.status == 200);
  CHECK(in.doc["shape"] == "cloud_api");
  REQUIRE(receiver.wait_for([](const auto& h) {
    for (const auto& x : h)
      if (x.doc.is_object() && x.doc["entry"][0]["changes"][0]["value"].contains("messages")) return true;
    return false;
  }));
  for (const auto& h : receiver.hits()) {
    const auto& value = h.doc["entry"][0]["changes"][0]["value"];
    if (!value.contains("messages")) continue;
    CHECK(value["contacts"][0]["wa_id"] == "4915100000002");
    CHECK(value["contacts"][0]["profile"]["name"].is_string());
    CHECK(value["messages"][0]["from"] == "4915100000002");
    CHECK(value["messages"][0]["type"] == "text");
    CHECK(value["messages"][0]["text"]["body"] == "hey");
    CHECK(value["messages"][0]["id"] == in.doc["id"]);
  }

  // Every callback is signed as Meta signs: sha256=<HMAC-SHA256(app secret, raw body)>.
  const auto hits = receiver.hits();
  REQUIRE(hits.size() == 4);
  for (const auto& h : hits) CHECK(h.header("X-Hub-Signature-256") == "sha256=" + python_hmac("sha256", "app-secret", h.body));

  // Bans: 131048 by default, or the code given.
  auto other = sim.get("/v21.0/222222222222222", kBearer).doc["display_phone_number"].get<std::string>();
  CHECK(sim.post("/sim/ban", {{"account", display}}).status == 200);
  CHECK(sim.post("/sim/ban", {{"account", other}, {"code", 368}}).status == 200);
  CHECK(sim.post("/sim/ban", {{"account", other}, {"code", "x"}}).status == 400);
  auto banned = sim.post("/v21.0/106540352242922/messages", text_message("4915112345678"), kBearer);
  CHECK(banned.status == 400);
  CHECK(banned.doc["error"]["code"] == 131048);
  auto blocked = sim.post("/v21.0/222222222222222/messages", text_message("4915112345678"), kBearer);
  CHECK(blocked.status == 400);
  CHECK(blocked.doc["error"]["code"] == 368);
}

TEST_CASE("simulator cloud_api: beyond 80 msg/s per number is 429 code 130429, the pair rate 131056, failures code 2",
          "[integration][simulator]") {
  ShapesReceiver receiver;
  auto config = cloud_config(receiver);
  config.cloud_api.pair_interval_ms = 60000;
  config.delivered_delay_ms = 0;  // only "sent" statuses: keeps the receiver quiet
  config.read_delay_ms = 0;
  RunningSimulator sim(config);

  // 100 sends at once to distinct recipients (no pair limit involved), all in flight together.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<long, json>> answers;
  sb::AsyncHttpClient client({});  // after what its callbacks reach
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    sb::HttpRequest req;
    req.url = sim.url("/v21.0/333/messages");
    req.headers = {{"Authorization", "Bearer graph-token"}, {"Content-Type", "application/json"}};
    req.body = text_message("49151" + std::to_string(1000000 + i)).dump();
    client.submit(std::move(req), [&](sb::HttpResponse r) {
      json doc;
      try {
        doc = json::parse(r.body);
      } catch (...) {
      }
      std::lock_guard lock(mu);
      answers.emplace_back(r.status, doc);
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::milliseconds(kWaitMs), [&] { return answers.size() == 100; }));
  }
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  int ok = 0, limited = 0;
  for (const auto& [status, doc] : answers) {
    if (status == 200) ++ok;
    if (status == 429) {
      ++limited;
      CHECK(doc["error"]["code"] == 130429);
    }
  }
  CHECK(ok + limited == 100);
  CHECK(limited > 0);
  if (elapsed < std::chrono::seconds(1)) CHECK(ok == 80);  // all within one second: exactly the limit
  else CHECK(ok <= 80 * (1 + std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()));

  // The pair rate: a second message to the same recipient within pair_interval_ms.
  CHECK(sim.post("/v21.0/444/messages", text_message("4915199999999"), kBearer).status == 200);
  auto pair = sim.post("/v21.0/444/messages", text_message("4915199999999"), kBearer);
  CHECK(pair.status == 400);
  CHECK(pair.doc["error"]["code"] == 131056);
  CHECK(sim.post("/v21.0/444/messages", text_message("4915199999998"), kBearer).status == 200);
  CHECK(sim.get("/sim/log?phone_number_id=444").doc["sends"].size() == 2);

  auto failing = cloud_config(receiver);
  failing.failure_rate = 1.0;
  RunningSimulator broken(failing);
  auto failed = broken.post("/v21.0/555/messages", text_message("4915112345678"), kBearer);
  CHECK(failed.status == 500);
  CHECK(failed.doc["error"]["code"] == 2);
}

TEST_CASE("simulator cloud_api: the webhook verification handshake", "[integration][simulator]") {
  ShapesReceiver receiver("verify-me");
  RunningSimulator sim(cloud_config(receiver));
  auto ok = sim.post("/sim/cloud_api/verify", json::object());
  REQUIRE(ok.status == 200);
  CHECK(ok.doc["ok"] == true);
  CHECK(ok.doc["status"] == 200);
  CHECK(std::regex_match(ok.doc["echoed"].get<std::string>(), std::regex("[0-9]+")));

  ShapesReceiver strict("another-token");
  RunningSimulator mismatched(cloud_config(strict));
  auto refused = mismatched.post("/sim/cloud_api/verify", json::object());
  REQUIRE(refused.status == 200);
  CHECK(refused.doc["ok"] == false);
  CHECK(refused.doc["status"] == 403);

  auto no_url = sim_config();
  RunningSimulator unset(no_url);
  CHECK(unset.post("/sim/cloud_api/verify", json::object()).status == 409);
}

TEST_CASE("simulator: the legacy /v1/messages API still answers and its sends are in /sim/log", "[integration][simulator]") {
  RunningSimulator sim(sim_config());
  auto sent = sim.call("POST", "/v1/messages", json{{"tenant", "t"}, {"session", "main"}, {"to", "+1555"}, {"text", "legacy"}}.dump(),
                       {{"Idempotency-Key", "m1"}});
  REQUIRE(sent.status == 200);
  auto log = sim.get("/sim/log?session=main").doc["sends"];
  REQUIRE(log.size() == 1);
  CHECK(log[0]["shape"] == "legacy");
  CHECK(log[0]["provider_message_id"] == sent.doc["provider_message_id"]);
  CHECK(sim.get("/v1/stats").doc["accepted"] == 1);
}
