// The request parsing the intake routes and the fuzz targets (tests/fuzz/) share.
#include <catch2/catch.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/events.hpp"
#include "switchboard/producers/request_parsing.hpp"

namespace {
const sb::SchemaSet& schemas() {
  static sb::SchemaSet s(SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  return s;
}
// "status field" of the refusal, or "ok".
template <typename F>
std::string verdict(F&& f) {
  try {
    f();
    return "ok";
  } catch (const sb::RequestRejected& e) {
    return std::to_string(e.status()) + (e.field().empty() ? "" : " " + e.field());
  }
}
const std::string kTenant = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
}  // namespace

TEST_CASE("request parsing: send body, idempotency key from header or body", "[unit][intake]") {
  auto send = [](const std::string& body, std::optional<std::string> idem = std::nullopt) {
    return verdict([&] { sb::parse_send_request(body, idem, schemas()); });
  };
  CHECK(send(R"({"to":"+15551234567","text":"hi"})") == "ok");
  CHECK(send(R"({"to":"+15551234567","text":"hi")") == "400");
  CHECK(send(R"({"to":"15551234567","text":"hi"})") == "422 to");
  CHECK(send(R"({"to":"+15551234567","text":"hi","idempotency_key":"a"})", "b") == "422 idempotency_key");
  CHECK(send(R"({"to":"+15551234567","text":"hi"})", "") == "422 idempotency_key");
  CHECK(send(R"({"to":"+15551234567","text":"hi"})", std::string(256, 'k')) == "422 idempotency_key");
  const auto r = sb::parse_send_request(R"({"to":"+15551234567","text":"hi","idempotency_key":"a"})", "a", schemas());
  CHECK(r.idempotency_key == "a");
  CHECK(r.priority == "default");
  CHECK(sb::bearer_token("Bearer sb_live_x") == "sb_live_x");
  CHECK_FALSE(sb::bearer_token("Bearer "));
  CHECK_FALSE(sb::bearer_token("Basic abc"));
}

TEST_CASE("request parsing: webhook create, update and replay bodies", "[unit][webhooks]") {
  auto create = [](const std::string& body) { return verdict([&] { sb::parse_webhook_create(body, schemas()); }); };
  auto update = [](const std::string& body) { return verdict([&] { sb::parse_webhook_update(body, schemas()); }); };
  auto replay = [](const std::string& body) { return verdict([&] { sb::parse_replay_since(body, schemas()); }); };
  CHECK(create(R"({"url":"https://hooks.example.com/x","events":["message.*"]})") == "ok");
  CHECK(create(R"({"url":"https://user@evil.example/","events":["*"]})") == "422 url");
  CHECK(create(R"({"url":"https://a.example:70000/","events":["*"]})") == "422 url");
  CHECK(create(R"({"url":"https://a.example/","events":["nope.thing"]})") == "422 events");
  CHECK(create(R"({"url":"https://a.example/","events":["*"],"secret":"whsec_AAAA"})") == "422 secret");
  CHECK(create("[") == "400");
  CHECK(update(R"({"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})") == "ok");
  CHECK(sb::parse_webhook_update(R"({"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})", schemas()).rotate_secret);
  CHECK(update("{}") == "422");
  CHECK(replay(R"({"since":"2024-02-29T23:59:59.5+14:00"})") == "ok");
  CHECK(replay(R"({"since":"2023-02-29T00:00:00Z"})") == "422 since");
  CHECK(replay(R"({"since":"2024-01-01T00:00:00+16:00"})") == "422 since");
}

TEST_CASE("event records: a time out of range is refused before it could be stored", "[unit][webhooks]") {
  auto record = [](const std::string& occurred_at) {
    return nlohmann::json({{"id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60"},
                           {"type", "message.sent"},
                           {"tenant", kTenant},
                           {"session", "main"},
                           {"occurred_at", occurred_at},
                           {"data", {{"message_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a61"}, {"provider_message_id", "p"}, {"to", "+15551234567"}}}})
        .dump();
  };
  const auto ok = sb::parse_event_record(record("2026-11-23T11:35:36.123Z"), schemas());
  CHECK(ok.tenant_id == kTenant);
  CHECK(ok.session == "main");
  CHECK(ok.body == record("2026-11-23T11:35:36.123Z"));
  // The schema's pattern accepts these; PostgreSQL would refuse them (the event would be
  // delivered but never replayable).
  for (const auto* bad : {"2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z"}) {
    INFO(bad);
    CHECK_THROWS_AS(sb::parse_event_record(record(bad), schemas()), sb::InvalidInput);
  }
  CHECK_THROWS_AS(sb::parse_event_record(R"({"id":"x"})", schemas()), sb::InvalidInput);
}

// Found by fuzz_event: nlohmann's parser throws out_of_range (not parse_error) for a number
// that overflows a double, which escaped parse_json as an internal error (intake: 500; a
// worker: not a clear invalid-record verdict).
TEST_CASE("request parsing: a number overflowing a double is malformed input (400), not an internal error",
          "[unit][intake]") {
  CHECK_THROWS_AS(sb::parse_json("1e999"), sb::InvalidInput);
  CHECK_THROWS_AS(sb::parse_json(R"({"n":-1e400})"), sb::InvalidInput);
  CHECK(verdict([] { sb::parse_send_request(R"({"to":"+15551234567","text":"hi","x":1e999})", std::nullopt, schemas()); }) ==
        "400");
  CHECK_THROWS_AS(sb::parse_event_record(R"({"id":1e999})", schemas()), sb::InvalidInput);
}

// Found while writing the fuzz targets: libstdc++'s std::regex (valijson's "pattern") recursed
// once per character and a 30 KB string overflowed the stack — an authenticated
// request crashed intake, and one record on sb.events or a lane topic crash-looped its
// consumers. Long strings a pattern would see are now refused before any regex runs.
TEST_CASE("schemas: a very long string under a pattern is refused, never crashes the process", "[unit][schema]") {
  const std::string huge(60000, '1');
  CHECK(verdict([&] {
          sb::parse_webhook_create(R"({"url":"https://a.example/","events":["*"],"secret":"whsec_)" + huge + "\"}", schemas());
        }) == "422 secret");
  CHECK(verdict([&] { sb::parse_webhook_update(R"({"events":["a.)" + std::string(60000, 'b') + "\"]}", schemas()); }) ==
        "422 events.0");
  CHECK(verdict([&] { sb::parse_replay_since(R"({"since":"2024-01-01T00:00:00.)" + huge + "Z\"}", schemas()); }) ==
        "422 since");
  CHECK(verdict([&] { sb::parse_send_request(R"({"to":"+)" + huge + R"(","text":"x"})", std::nullopt, schemas()); }) ==
        "422 to");
  std::string host;
  CHECK_FALSE(sb::url_syntax_problem("https://a.example/" + std::string(100000, 'x'), host).empty());
  const std::string event = R"({"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60","type":"message.sent","tenant":")" + kTenant +
                            R"(","session":"main","occurred_at":"2026-11-23T11:35:36.)" + huge +
                            R"(Z","data":{"message_id":"m","provider_message_id":"p","to":"+1"}})";
  try {
    sb::parse_event_record(event, schemas());
    FAIL("accepted");
  } catch (const sb::InvalidInput& e) {
    CHECK(e.field() == "occurred_at");
  }
  const std::string command = R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000001","type":"message.send","tenant":")" +
                              kTenant + R"(","session":"main","created_at":"2026-11-23T11:35:36.)" + huge +
                              R"(Z","priority":"default","data":{"to":"+15551234567","text":"hello"}})";
  try {
    sb::parse_command(kTenant, command, schemas());
    FAIL("accepted");
  } catch (const sb::InvalidInput& e) {
    CHECK(e.field() == "created_at");
  }
}
