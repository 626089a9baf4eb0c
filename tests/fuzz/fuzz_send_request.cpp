// The intake request path of POST /v1/sessions/{session}/messages, minus the server: the
// Authorization header, the Idempotency-Key header and the body (JSON, schema, idempotency key).
// Input: "<authorization>\n<idempotency-key>\n<body>"; a missing line means the header is absent.
#include "fuzz_support.hpp"
#include "switchboard/producers/request_parsing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  auto in = sbfuzz::text(data, size);
  std::optional<std::string_view> auth, idem;
  auto line = [&in]() -> std::optional<std::string_view> {
    const auto nl = in.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;
    auto l = in.substr(0, nl);
    in.remove_prefix(nl + 1);
    return l;
  };
  auth = line();
  idem = line();
  if (auth) {
    const auto key = sb::bearer_token(*auth);
    if (key && key->empty()) __builtin_trap();  // "Bearer " alone must not pass as a key
  }
  try {
    const auto r = sb::parse_send_request(in, idem ? std::optional<std::string>(*idem) : std::nullopt, sbfuzz::schemas());
    // What the route then stores and publishes: the schema's promises hold.
    if (r.to.size() < 8 || r.to.size() > 16 || r.to[0] != '+') __builtin_trap();
    if (r.text.empty() || r.priority.empty()) __builtin_trap();
    if (r.idempotency_key && (r.idempotency_key->empty() || r.idempotency_key->size() > 255)) __builtin_trap();
  } catch (const sb::RequestRejected& e) {
    if (e.status() != 400 && e.status() != 422) __builtin_trap();
  }
  return 0;
}
