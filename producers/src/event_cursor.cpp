#include "switchboard/producers/event_cursor.hpp"

#include <charconv>

namespace sb {

std::optional<EventCursor> EventCursor::parse(std::string_view text) {
  const auto dash = text.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == text.size()) return std::nullopt;
  auto digits = [](std::string_view s) { return s.find_first_not_of("0123456789") == std::string_view::npos; };
  const auto p = text.substr(0, dash), o = text.substr(dash + 1);
  if (!digits(p) || !digits(o)) return std::nullopt;
  EventCursor c;
  if (std::from_chars(p.data(), p.data() + p.size(), c.partition).ec != std::errc()) return std::nullopt;
  if (std::from_chars(o.data(), o.data() + o.size(), c.offset).ec != std::errc()) return std::nullopt;
  return c;
}

}  // namespace sb
