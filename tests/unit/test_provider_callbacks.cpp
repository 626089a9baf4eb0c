// Provider callbacks parsed into our records (pure: no I/O), and the Cloud API error mapping.
#include <catch2/catch.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/producers/callback_records.hpp"
#include "switchboard/workers/providers/cloud_api_provider.hpp"
#include "switchboard/workers/providers/engine_provider.hpp"

using namespace sb;
using nlohmann::json;

TEST_CASE("engine callbacks: WAHA envelopes become status, receipt and inbound records", "[unit][callbacks]") {
  auto status = parse_engine_callback(
      R"({"id":"evt_01","timestamp":1700000000123,"event":"session.status","session":"sbabc","me":{"id":"15551234567@c.us"},"payload":{"status":"WORKING"}})");
  CHECK(status.id == "evt_01");
  CHECK(status.at == "2023-11-14T22:13:20.123Z");
  auto r = engine_record(status, "t1", "s1");
  REQUIRE(r);
  CHECK(r->kind == "status");
  CHECK(r->data["status"] == "WORKING");
  CHECK(r->data["account"] == "15551234567");

  struct Ack {
    int level;
    const char* status;
  };
  for (auto [level, expected] : {Ack{1, "sent"}, Ack{2, "delivered"}, Ack{3, "read"}, Ack{4, "read"}, Ack{-1, "failed"}}) {
    auto ack = parse_engine_callback(json{{"id", "evt_a"}, {"event", "message.ack"}, {"session", "sbabc"},
                                          {"payload", {{"id", "true_1555@c.us_AAA"}, {"ack", level}}}}
                                         .dump());
    auto rec = engine_record(ack, "t1", "s1");
    REQUIRE(rec);
    CHECK(rec->kind == "receipt");
    CHECK(rec->data["status"] == expected);
    CHECK(rec->data["provider_message_id"] == "true_1555@c.us_AAA");
  }
  auto pending = parse_engine_callback(R"({"event":"message.ack","session":"x","payload":{"id":"m","ack":0}})");
  CHECK_FALSE(engine_record(pending, "t1", "s1"));
  CHECK(pending.id.rfind("sha256:", 0) == 0);  // no id from older engines: the body's hash

  auto in = parse_engine_callback(
      R"({"id":"evt_2","event":"message","session":"x","payload":{"id":"false_15550001111@c.us_B","from":"15550001111@c.us","body":"hi","fromMe":false}})");
  auto inbound = engine_record(in, "t1", "s1");
  REQUIRE(inbound);
  CHECK(inbound->kind == "inbound");
  CHECK(inbound->data["from"] == "+15550001111");
  CHECK(inbound->data["text"] == "hi");
  auto echo = parse_engine_callback(R"({"event":"message","session":"x","payload":{"id":"m","from":"1@c.us","fromMe":true}})");
  CHECK_FALSE(engine_record(echo, "t1", "s1"));

  CHECK_THROWS_AS(parse_engine_callback("{"), InvalidInput);
  CHECK_THROWS_AS(parse_engine_callback(R"({"event":"message"})"), InvalidInput);
  CHECK_THROWS_AS(parse_engine_callback(R"(["event"])"), InvalidInput);
  auto bad_ack = parse_engine_callback(R"({"event":"message.ack","session":"x","payload":{"id":"m","ack":"two"}})");
  CHECK_THROWS_AS(engine_record(bad_ack, "t", "s"), InvalidInput);
}

TEST_CASE("cloud callbacks: statuses and messages per phone_number_id, failures with their Graph code", "[unit][callbacks]") {
  const std::string body = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
    "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550009999","phone_number_id":"106540352242922"},
    "statuses":[{"id":"wamid.A","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"},
                {"id":"wamid.B","status":"failed","timestamp":"1700000001","recipient_id":"1","errors":[{"code":131026,"title":"Message undeliverable"}]}],
    "messages":[{"from":"15551234567","id":"wamid.IN","timestamp":"1700000002","type":"text","text":{"body":"hello"}}]}}]}]})";
  auto facts = parse_cloud_callback(body);
  REQUIRE(facts.size() == 3);
  CHECK(facts[0].phone_number_id == "106540352242922");
  CHECK(facts[0].record.id == "wamid.A:delivered");
  CHECK(facts[0].record.at == "2023-11-14T22:13:20.000Z");
  CHECK(facts[1].record.data["status"] == "failed");
  CHECK(facts[1].record.data["error"].get<std::string>().find("131026") != std::string::npos);
  CHECK(facts[2].record.kind == "inbound");
  CHECK(facts[2].record.data["from"] == "+15551234567");
  CHECK(facts[2].record.data["text"] == "hello");
  CHECK_THROWS_AS(parse_cloud_callback(R"({"object":"page","entry":[]})"), InvalidInput);
  CHECK_THROWS_AS(parse_cloud_callback(R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[]}}]}]})"),
                  InvalidInput);  // no metadata
}

TEST_CASE("cloud api: Graph error codes decide retry, back-off, rejection and pausing", "[unit][cloud_api]") {
  auto graph = [](long http, long code) {
    HttpResponse r;
    r.status = http;
    r.body = json{{"error", {{"message", "m"}, {"type", "OAuthException"}, {"code", code}, {"fbtrace_id", "x"}}}}.dump();
    return CloudApiProvider::interpret(r, "");
  };
  auto throughput = graph(429, 130429);
  CHECK(throughput.status == SendResult::Status::RetryableError);
  CHECK_FALSE(throughput.maybe_delivered);
  CHECK(throughput.retry_after_ms >= 1000);
  CHECK(throughput.throttled);  // the whole session backs off (every lane, every replica)
  auto pair = graph(400, 131056);
  CHECK(pair.status == SendResult::Status::RetryableError);
  CHECK(pair.retry_after_ms >= 6000);
  CHECK_FALSE(pair.throttled);  // one recipient only
  CHECK(graph(400, 131048).pause_reason == "spam_rate_limit");
  CHECK(graph(400, 131048).status == SendResult::Status::Rejected);
  CHECK(graph(400, 368).pause_reason == "policy_block");
  CHECK(graph(400, 131026).status == SendResult::Status::Rejected);
  CHECK(graph(400, 131026).pause_reason.empty());
  CHECK(graph(401, 190).status == SendResult::Status::Rejected);
  CHECK(graph(500, 2).status == SendResult::Status::RetryableError);
  HttpResponse ok;
  ok.status = 200;
  ok.body = R"({"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.OK"}]})";
  auto sent = CloudApiProvider::interpret(ok, "");
  CHECK(sent.status == SendResult::Status::Sent);
  CHECK(sent.provider_message_id == "wamid.OK");
  CHECK(EngineProvider::chat_id("+15551234567") == "15551234567@c.us");
}

// Found by the fuzz target (tests/fuzz/fuzz_callback.cpp): nlohmann's type errors escaped the
// parsers (a 500 at intake, which the provider retries for ever), and a far-future timestamp
// overflowed the clock's nanoseconds (undefined behaviour).
TEST_CASE("provider callbacks: wrongly typed fields and out-of-range timestamps are malformed input", "[unit][callbacks]") {
  auto failed_ack = parse_engine_callback(
      R"({"event":"message.ack","session":"x","payload":{"id":"m","ack":-1,"ackName":7}})");
  CHECK_THROWS_AS(engine_record(failed_ack, "t", "s"), InvalidInput);
  auto echo = parse_engine_callback(R"({"event":"message","session":"x","payload":{"id":"m","from":"1@c.us","fromMe":"yes"}})");
  CHECK_THROWS_AS(engine_record(echo, "t", "s"), InvalidInput);
  auto serialized = parse_engine_callback(
      R"({"event":"message.ack","session":"x","payload":{"id":{"_serialized":5},"ack":2}})");
  CHECK_THROWS_AS(engine_record(serialized, "t", "s"), InvalidInput);
  CHECK_THROWS_AS(parse_engine_callback(R"({"event":"session.status","session":"x","timestamp":9000000000000000000,"payload":{}})"),
                  InvalidInput);
  // Year 9999 in ms came back as "1816-03-30T05:56:09.-934Z" before: the clock ends in 2262.
  CHECK_THROWS_AS(parse_engine_callback(R"({"event":"session.status","session":"x","timestamp":253402300799999,"payload":{}})"),
                  InvalidInput);
  CHECK(parse_engine_callback(R"({"event":"session.status","session":"x","timestamp":7258118400123,"payload":{}})").at ==
        "2200-01-01T00:00:00.123Z");
  const auto cloud = [](const std::string& value) {
    return R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},)" +
           value + "}}]}]}";
  };
  CHECK_THROWS_AS(parse_cloud_callback(cloud(R"("statuses":[{"id":"w","status":"failed","errors":[{"code":"x"}]}])")), InvalidInput);
  CHECK_THROWS_AS(parse_cloud_callback(cloud(R"("statuses":[{"id":"w","status":"sent","timestamp":"99999999999999"}])")), InvalidInput);
  CHECK_THROWS_AS(parse_cloud_callback(R"({"object":7,"entry":[]})"), InvalidInput);
  CHECK_THROWS_AS(parse_cloud_callback(R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":1}]}]})"), InvalidInput);
}

TEST_CASE("providers: engine reach-out time-locks (error 463) are recognised, and the third within the window pauses",
          "[unit][providers][pacing]") {
  // WAHA GOWS: HTTP 500 {"exception": {"message": "2 UNKNOWN: server returned error 463"}}.
  CHECK(ReachOutLocks::is_lock(500, R"({"statusCode":500,"exception":{"message":"2 UNKNOWN: server returned error 463"}})"));
  CHECK_FALSE(ReachOutLocks::is_lock(500, R"({"statusCode":500,"exception":{"message":"timeout"}})"));
  CHECK_FALSE(ReachOutLocks::is_lock(201, R"({"id":"error 463"})"));
  ReachOutLocks locks(3, std::chrono::minutes(10));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(locks.repeated("t/a", t0));
  CHECK_FALSE(locks.repeated("t/a", t0 + std::chrono::minutes(11)));  // the first one left the window
  CHECK_FALSE(locks.repeated("t/b", t0 + std::chrono::minutes(11)));  // another session counts apart
  CHECK_FALSE(locks.repeated("t/a", t0 + std::chrono::minutes(12)));
  CHECK(locks.repeated("t/a", t0 + std::chrono::minutes(13)));        // three within ten minutes
  CHECK_FALSE(locks.repeated("t/a", t0 + std::chrono::minutes(14)));  // counted afresh after a pause
}

TEST_CASE("providers: reach-out locks counted in Redis fall back to the process's own count while Redis is unreachable",
          "[unit][providers][pacing]") {
  // Nothing listens on port 1: every EVAL fails at once (connection refused).
  RedisConfig unreachable{"redis://127.0.0.1:1", 200};
  SharedReachOutLocks locks(&unreachable, 3, std::chrono::minutes(10));
  CHECK_FALSE(locks.repeated("t", "a"));
  CHECK_FALSE(locks.repeated("t", "b"));  // another session counts apart
  CHECK_FALSE(locks.repeated("t", "a"));
  CHECK(locks.repeated("t", "a"));  // the third of "a" in this process
  SharedReachOutLocks local_only(nullptr, 2, std::chrono::minutes(10));
  CHECK_FALSE(local_only.repeated("t", "a"));
  CHECK(local_only.repeated("t", "a"));
}
