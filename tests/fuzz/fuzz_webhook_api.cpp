// Webhook management bodies: POST /v1/webhooks, PATCH /v1/webhooks/{id}, POST …/replay, and
// the URL syntax check in front of the address guard. The first byte picks the route.
#include "fuzz_support.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/webhook_signature.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/producers/request_parsing.hpp"

namespace {
void check_events(const std::vector<std::string>& events) {
  if (events.empty()) __builtin_trap();
  for (const auto& p : events)
    if (!sb::valid_event_pattern(p)) __builtin_trap();
}
void check_secret(const std::optional<std::string>& s) {
  if (s) sb::parse_webhook_secret(*s);  // what was accepted must parse again
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto body = sbfuzz::text(data + 1, size - 1);
  const auto& schemas = sbfuzz::schemas();
  try {
    switch (data[0] % 4) {
      case 0: {
        const auto r = sb::parse_webhook_create(body, schemas);
        std::string host;
        if (!sb::url_syntax_problem(r.url, host).empty() || host.empty()) __builtin_trap();
        check_events(r.events);
        check_secret(r.secret);
        break;
      }
      case 1: {
        const auto r = sb::parse_webhook_update(body, schemas);
        std::string host;
        if (r.url && (!sb::url_syntax_problem(*r.url, host).empty() || host.empty())) __builtin_trap();
        if (r.events) check_events(*r.events);
        check_secret(r.secret);
        if (r.secret && !r.rotate_secret) __builtin_trap();
        break;
      }
      case 2: {
        const auto since = sb::parse_replay_since(body, schemas);
        if (!sb::rfc3339_in_range(since)) __builtin_trap();
        break;
      }
      case 3: {
        std::string host;
        (void)sb::url_syntax_problem(std::string(body), host);
        break;
      }
    }
  } catch (const sb::RequestRejected& e) {
    if (e.status() != 400 && e.status() != 422) __builtin_trap();
  }
  return 0;
}
