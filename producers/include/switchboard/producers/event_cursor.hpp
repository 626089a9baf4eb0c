#pragma once
// Where an event sits on sb.events, as the client sees it: "<partition>-<offset>". It is the
// SSE `id:` (so EventSource sends it back as Last-Event-ID), a WebSocket message's "cursor",
// and `?after=` on a reconnect. Not a secret and not signed: what a cursor can name is checked
// (the caller's partition, offsets the partition has) and every record read is filtered by
// tenant, so a made-up cursor gets an error or nothing, never another tenant's events.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb {

struct EventCursor {
  int32_t partition = 0;
  int64_t offset = 0;  // of the event the client already has; resuming starts at offset + 1

  std::string str() const { return std::to_string(partition) + "-" + std::to_string(offset); }
  // nullopt unless exactly "<digits>-<digits>" within int32 / int64 (no signs, no spaces).
  static std::optional<EventCursor> parse(std::string_view text);
  bool operator==(const EventCursor&) const = default;
};

}  // namespace sb
