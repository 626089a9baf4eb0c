#pragma once
// Identifiers, secrets and timestamps.
#include <chrono>
#include <string>
#include <string_view>

namespace sb {

// UUIDv7: time-ordered, so message ids index well in PostgreSQL and sort by creation.
std::string new_uuid_v7();
// Deterministic UUID (v8 layout) from a name: the same input always gives the same id, which is
// how a replayed command produces an event with the same id (consumers dedupe on it).
std::string uuid_from_name(std::string_view name);
// `prefix` + 32 random bytes, base64url: API keys (webhook secrets: new_webhook_secret()).
std::string new_secret(std::string_view prefix);
std::string sha256_hex(std::string_view data);

using Clock = std::chrono::system_clock;
std::string to_rfc3339(Clock::time_point t);  // 2026-11-23T11:35:36.123Z
inline std::string now_rfc3339() { return to_rfc3339(Clock::now()); }
// For a string the schemas' RFC 3339 pattern accepted (YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)): are
// its fields in range? (2024-02-30 has the shape; PostgreSQL would refuse it.)
bool rfc3339_in_range(const std::string& t);
// An RFC 3339 time the schemas' pattern accepted (fields in range) → Unix milliseconds.
long long rfc3339_unix_ms(const std::string& t);

}  // namespace sb
