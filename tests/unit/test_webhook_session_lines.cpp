// The per_session ordering protocol (SessionLines) alone: who waits, who is parked, in which
// order, and when the line gives way to the durable schedule.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "switchboard/workers/webhooks/session_lines.hpp"

TEST_CASE("session lines: one in flight per (endpoint, session), a parked head takes its line with it, in order",
          "[unit][webhooks]") {
  sb::SessionLines<std::string> lines;
  const sb::SessionLines<std::string>::Key a{"e1", "main"}, b{"e1", "other"};
  std::vector<std::string> parked;  // rows, in the order they would be written
  auto park = [&](std::string s) { parked.push_back(std::move(s)); };

  std::string e1 = "a1";
  CHECK_FALSE(lines.join(a, e1, park));  // no line: the caller checks the schedule, then opens one
  lines.open(a, e1);
  for (const char* s : {"a2", "a3"}) {
    std::string item = s;
    CHECK(lines.join(a, item, park));  // waits behind the head
  }
  std::string other = "b1";
  CHECK_FALSE(lines.join(b, other, park));  // another session is independent
  CHECK(parked.empty());

  // a1 delivered: a2 becomes the head.
  bool recorded = false;
  auto next = lines.head_done(a, false, [&] { recorded = true; }, park);
  CHECK(recorded);
  REQUIRE(next);
  CHECK(*next == "a2");

  // a2 fails: its own row first, then a3 behind it; a newcomer is parked behind them until
  // a2's row is durable.
  next = lines.head_done(a, true, [&] { parked.push_back("a2"); }, park);
  CHECK_FALSE(next);
  std::string a4 = "a4";
  CHECK(lines.join(a, a4, park));
  CHECK(parked == std::vector<std::string>{"a2", "a3", "a4"});

  // Durable: the line is gone, the schedule holds the session back from now on.
  lines.parked_durable(a);
  std::string a5 = "a5";
  CHECK_FALSE(lines.join(a, a5, park));
  CHECK(lines.size() == 0);

  // A line whose head is delivered with nobody behind is dropped at once.
  lines.open(b, other);
  CHECK_FALSE(lines.head_done(b, false, [] {}, park));
  CHECK(lines.size() == 0);
}
