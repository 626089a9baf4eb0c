#include <catch2/catch.hpp>

#include "switchboard/core/command.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/events.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/schema.hpp"

using nlohmann::json;

namespace {
const sb::SchemaSet& schema_set() {
  static sb::SchemaSet s(SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  return s;
}
std::string field_of(const std::string& schema, const json& doc) {
  try {
    schema_set().validate(schema, doc);
  } catch (const sb::InvalidInput& e) {
    return "field:" + e.field();
  }
  return "valid";
}
const std::string kSchemaTenant = "0192f7a0-1111-7aaa-8bbb-000000000001";
}  // namespace

TEST_CASE("schema: send request body", "[unit][schema]") {
  const std::string s = "http/send_message_request";
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", "hi"}}) == "valid");
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", "hi"}, {"priority", "high"}, {"idempotency_key", "k1"}}) == "valid");
  CHECK(field_of(s, {{"to", "15551234567"}, {"text", "hi"}}) == "field:to");
  CHECK(field_of(s, {{"to", 15551234567}, {"text", "hi"}}) == "field:to");  // wrong type
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", ""}}) == "field:text");
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", std::string(4097, 'x')}}) == "field:text");
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", "hi"}, {"priority", "urgent"}}) == "field:priority");
  CHECK(field_of(s, {{"text", "hi"}}) != "valid");
  CHECK(field_of(s, {{"to", "+15551234567"}, {"text", "hi"}, {"bcc", "x"}}) != "valid");
  CHECK(field_of(s, json::array()) != "valid");
}

TEST_CASE("schema: malformed JSON is a clear InvalidInput", "[unit][schema]") {
  CHECK_THROWS_WITH(sb::parse_json("{\"to\": "), Catch::Contains("malformed JSON"));
}

TEST_CASE("command: round trip through the command schema, key must be the tenant", "[unit][schema]") {
  sb::SendCommand c{sb::new_uuid_v7(), kSchemaTenant, "main", "high", sb::now_rfc3339(), "+15551234567", "hello"};
  const auto text = sb::to_json(c).dump();
  auto back = sb::parse_command(kSchemaTenant, text, schema_set());
  CHECK(back.id == c.id);
  CHECK(back.to == "+15551234567");
  CHECK(back.priority == "high");
  CHECK_THROWS_AS(sb::parse_command("someone-else", text, schema_set()), sb::InvalidInput);
  CHECK_THROWS_AS(sb::parse_command(kSchemaTenant, "not json", schema_set()), sb::InvalidInput);
  auto bad = sb::to_json(c);
  bad["data"].erase("text");
  CHECK_THROWS_WITH(sb::parse_command(kSchemaTenant, bad.dump(), schema_set()), Catch::Contains("text"));
  bad = sb::to_json(c);
  bad["created_at"] = "yesterday";
  CHECK_THROWS_WITH(sb::parse_command(kSchemaTenant, bad.dump(), schema_set()), Catch::Contains("created_at"));
  bad["created_at"] = "2026-11-23T10:00:00+01:00";
  CHECK_NOTHROW(sb::parse_command(kSchemaTenant, bad.dump(), schema_set()));
  bad = sb::to_json(c);
  bad["type"] = "message.explode";
  CHECK_THROWS_AS(sb::parse_command(kSchemaTenant, bad.dump(), schema_set()), sb::InvalidInput);
}

TEST_CASE("events: envelope matches its schema and replays keep the event id", "[unit][schema][idempotency]") {
  sb::MessageOutcome sent{sb::new_uuid_v7(), kSchemaTenant, "main", "+15551234567", "hi", "default", "sent", "sim_1", {}, sb::now_rfc3339()};
  auto e1 = sb::message_event(sent);
  CHECK(field_of("events/event", e1) == "valid");
  CHECK(e1["type"] == "message.sent");
  CHECK(e1["data"]["message_id"] == sent.id);
  // The same outcome published again (a replay after a crash) carries the same event id…
  CHECK(sb::message_event(sent)["id"] == e1["id"]);
  // …while a different message or a different event type does not.
  auto other = sent;
  other.id = sb::new_uuid_v7();
  CHECK(sb::message_event(other)["id"] != e1["id"]);
  auto failed = sent;
  failed.status = "failed";
  failed.error = "provider rejected";
  auto e2 = sb::message_event(failed);
  CHECK(field_of("events/event", e2) == "valid");
  CHECK(e2["id"] != e1["id"]);
  e2["data"].erase("error");
  CHECK(field_of("events/event", e2) != "valid");
}

TEST_CASE("ids: uuid v7 are unique, ordered and well formed, secrets are distinct", "[unit][idempotency]") {
  auto a = sb::new_uuid_v7();
  auto b = sb::new_uuid_v7();
  CHECK(a != b);
  CHECK(a.size() == 36);
  CHECK(a[14] == '7');
  CHECK(a.substr(0, 8) <= b.substr(0, 8));
  CHECK(sb::uuid_from_name("x") == sb::uuid_from_name("x"));
  CHECK(sb::new_secret("sb_live_") != sb::new_secret("sb_live_"));
  CHECK(sb::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
