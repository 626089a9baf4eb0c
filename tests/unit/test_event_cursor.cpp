// Cursors of the event stream and its filters: what a client may send and what matches.
#include <catch2/catch.hpp>

#include "switchboard/producers/event_cursor.hpp"
#include "switchboard/producers/event_feed.hpp"

TEST_CASE("event cursor: round trip and what is refused", "[unit][stream]") {
  const sb::EventCursor c{3, 1042};
  CHECK(c.str() == "3-1042");
  CHECK(sb::EventCursor::parse("3-1042") == c);
  CHECK(sb::EventCursor::parse("0-0") == sb::EventCursor{0, 0});
  CHECK(sb::EventCursor::parse("2147483647-9223372036854775807") == sb::EventCursor{2147483647, INT64_MAX});
  for (const char* bad : {"", "3", "3-", "-5", "3--5", "-3-5", "+3-5", "3-+5", " 3-5", "3-5 ", "3-5x", "a-b",
                          "2147483648-1", "1-9223372036854775808", "3-1-2"})
    CHECK_FALSE(sb::EventCursor::parse(bad));
}

TEST_CASE("event stream filter: types as webhook patterns, sessions by name", "[unit][stream]") {
  const std::string main = "main", support = "support";
  sb::StreamFilter all;
  CHECK(all.matches("message.sent", &main));
  CHECK(all.matches("webhook.endpoint.disabled", nullptr));

  sb::StreamFilter family{{"message.*"}, {}};
  CHECK(family.matches("message.failed", &main));
  CHECK_FALSE(family.matches("webhook.endpoint.disabled", nullptr));

  sb::StreamFilter exact{{"message.sent", "webhook.*"}, {"support"}};
  CHECK(exact.matches("message.sent", &support));
  CHECK_FALSE(exact.matches("message.sent", &main));
  CHECK_FALSE(exact.matches("message.failed", &support));
  // A session filter leaves out events about no session.
  CHECK_FALSE(exact.matches("webhook.endpoint.disabled", nullptr));
}
