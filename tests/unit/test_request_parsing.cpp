// The request parsing the intake routes and the fuzz targets (tests/fuzz/) share.
#include <catch2/catch.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/events.hpp"
#include "switchboard/producers/command_record.hpp"
#include "switchboard/producers/request_parsing.hpp"
#include "switchboard/producers/send_request_check.hpp"

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

TEST_CASE("kafka record of a send: the direct writer gives to_json(command).dump()'s bytes, and parses back",
          "[unit][intake]") {
  sb::SendCommand c{"01a23437-7d2f-7579-a2bd-3e7fe06ae3f5", "01a23437-0da7-730a-a7f2-6b75d8e9a304", "main", "default",
                    "2026-12-02T01:00:00.123Z", "+15550001234", "hello"};
  CHECK(sb::send_command_record(c) == sb::to_json(c).dump());
  // Every byte value inside the text (escapes, control characters, DEL, bytes of UTF-8 that
  // take nlohmann's path), and in the other fields.
  for (int ch = 0; ch < 256; ++ch) {
    sb::SendCommand t = c;
    t.text = std::string("a") + static_cast<char>(ch) + "b";
    t.session = std::string("s") + static_cast<char>(ch);
    std::string direct, reference;
    try {
      direct = sb::send_command_record(t);
    } catch (const std::exception& e) {
      direct = std::string("threw: ") + e.what();
    }
    try {
      reference = sb::to_json(t).dump();
    } catch (const std::exception& e) {
      reference = std::string("threw: ") + e.what();  // a lone byte >= 0x80 is invalid UTF-8: both throw alike
    }
    INFO("byte " << ch);
    CHECK(direct == reference);
  }
  sb::SendCommand utf8 = c;
  utf8.text = "caf\xc3\xa9 \xe2\x9c\x93 \"quoted\" \\ tab\t";
  CHECK(sb::send_command_record(utf8) == sb::to_json(utf8).dump());
  // What a worker reads: the record parses back to the same command.
  const auto back = sb::parse_command(c.tenant, sb::send_command_record(c), schemas());
  CHECK(back.id == c.id);
  CHECK(back.text == c.text);
  CHECK(back.to == c.to);
  CHECK(back.priority == c.priority);
}

TEST_CASE("send body shortcut: answers exactly as the valijson path, for valid and refused bodies alike", "[unit][intake]") {
  const auto shortcut = sb::SendBodyShortcut::from_dir(SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  // Written for the repo's schema: if this fails, schemas/http/send_message_request.json changed
  // and SendBodyShortcut::accepts (and its copy of the schema) must follow it.
  REQUIRE(shortcut.enabled());
  CHECK_FALSE(sb::SendBodyShortcut(nlohmann::json::object()).enabled());
  const std::string long_text(4096, 'x'), too_long_text(4097, 'x'), key255(255, 'k'), key256(256, 'k');
  const std::vector<std::string> bodies = {
      R"({"to":"+15551234567","text":"hi"})",
      R"({"to":"+15551234567","text":"hi","priority":"high"})",
      R"({"to":"+15551234567","text":"hi","priority":"low","idempotency_key":"k-1"})",
      R"({"text":"hi","to":"+1555123"})",                      // 8 characters: the shortest E.164
      R"({"to":"+123456789012345","text":"hi"})",              // 16: the longest
      R"({"to":"+1234567890123456","text":"hi"})",             // 17
      R"({"to":"+155512","text":"hi"})",                       // too short
      R"({"to":"+05551234567","text":"hi"})",                  // leading 0
      R"({"to":"15551234567","text":"hi"})",                   // no +
      R"({"to":"+1555123456a","text":"hi"})",
      R"({"to":"+15551234567","text":""})",
      "{\"to\":\"+15551234567\",\"text\":\"" + long_text + "\"}",
      "{\"to\":\"+15551234567\",\"text\":\"" + too_long_text + "\"}",
      "{\"to\":\"+15551234567\",\"text\":\"caf\xc3\xa9\"}",
      R"({"to":"+15551234567","text":"hi","priority":"urgent"})",
      R"({"to":"+15551234567","text":"hi","priority":null})",
      R"({"to":"+15551234567","text":"hi","idempotency_key":""})",
      "{\"to\":\"+15551234567\",\"text\":\"hi\",\"idempotency_key\":\"" + key255 + "\"}",
      "{\"to\":\"+15551234567\",\"text\":\"hi\",\"idempotency_key\":\"" + key256 + "\"}",
      R"({"to":"+15551234567","text":"hi","send_at":"2030-01-01T00:00:00Z"})",
      R"({"to":"+15551234567","text":"hi","send_at":"yesterday"})",
      R"({"to":"+15551234567","text":"hi","extra":1})",
      R"({"to":"+15551234567"})",
      R"({"text":"hi"})",
      R"({"to":15551234567,"text":"hi"})",
      R"({"to":"+15551234567","text":["hi"]})",
      R"(["to","text"])",
      R"("text")",
      R"({"to":"+15551234567","text":"hi")",
      R"({"to":"+15551234567","text":1e999})",
      "",
  };
  // What a parse answered: the request's fields, or the refusal's status, field and message.
  auto outcome = [](auto&& parse) -> std::string {
    try {
      const auto r = parse();
      return "ok " + r.to + "|" + r.text + "|" + r.priority + "|" + r.idempotency_key.value_or("-") + "|" +
             r.send_at.value_or("-") + "|" + std::to_string(r.send_at_unix_ms);
    } catch (const sb::RequestRejected& e) {
      return std::to_string(e.status()) + " " + e.field() + " " + e.what();
    }
  };
  int shortcut_taken = 0;
  for (const auto& body : bodies)
    for (const std::optional<std::string> header : {std::optional<std::string>(), std::optional<std::string>("k-1"),
                                                     std::optional<std::string>("")}) {
      INFO("body " << body.substr(0, 120) << " header " << header.value_or("(none)"));
      CHECK(outcome([&] { return shortcut.parse(body, header, schemas()); }) ==
            outcome([&] { return sb::parse_send_request(body, header, schemas()); }));
      const auto doc = nlohmann::json::parse(body, nullptr, false);
      if (!doc.is_discarded() && shortcut.accepts(doc)) {
        ++shortcut_taken;
        CHECK_NOTHROW(schemas().validate("http/send_message_request", doc));  // it only takes what valijson takes
      }
    }
  CHECK(shortcut_taken >= 8 * 3);  // the plain sends above did take it
}
