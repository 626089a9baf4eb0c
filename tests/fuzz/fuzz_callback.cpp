// Provider callbacks at intake, minus the server and the session lookup: the engine (WAHA)
// webhook body with its X-Webhook-Hmac, the Cloud API body with its X-Hub-Signature-256, and
// Meta's GET handshake query. The first byte picks the route; for the two POSTs the input is
// "<signature header>\n<body>".
//
// The signature gate is fuzzed with the input's header (it must refuse it unless it is the
// body's MAC, which random bytes never are — and accept the real MAC, in either case). The
// parsers then get the body as intake hands it to them once verified: a signed body from a
// buggy or compromised provider node must be a 400 (InvalidInput), never a crash or a 500.
#include <cctype>

#include "fuzz_support.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/hmac.hpp"
#include "switchboard/core/url_query.hpp"
#include "switchboard/producers/callback_auth.hpp"
#include "switchboard/producers/callback_records.hpp"

namespace {

constexpr std::string_view kKey = "fuzz-engine-hmac-key", kSecret = "fuzz-app-secret", kVerify = "fuzz-verify-token";

void check_record(const sb::CallbackRecord& r) {
  if (r.id.empty() || r.at.empty()) __builtin_trap();
  if (r.kind != "status" && r.kind != "receipt" && r.kind != "inbound") __builtin_trap();
  if (r.kind == "receipt") {
    const auto& s = r.data.at("status");
    if (s != "sent" && s != "delivered" && s != "read" && s != "failed") __builtin_trap();
  }
  (void)r.to_json().dump();  // what goes onto sb.callbacks must serialise
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int route = data[0] % 3;
  auto in = sbfuzz::text(data + 1, size - 1);
  if (route == 2) {
    sb::http::Request req;
    sb::http::parse_query(in, req.params);
    const auto challenge = sb::cloud_handshake_challenge(req, kVerify);
    if (challenge && (req.get_param_value("hub.mode") != "subscribe" || req.get_param_value("hub.verify_token") != kVerify))
      __builtin_trap();
    if (challenge && *challenge != req.get_param_value("hub.challenge")) __builtin_trap();
    if (sb::cloud_handshake_challenge(req, "")) __builtin_trap();  // no verify_token set: never
    return 0;
  }
  const auto nl = in.find('\n');
  const auto header = nl == std::string_view::npos ? std::string_view() : in.substr(0, nl);
  const auto body = nl == std::string_view::npos ? in : in.substr(nl + 1);
  try {
    if (route == 0) {
      const auto mac = sb::hmac_hex(sb::HmacDigest::Sha512, kKey, body);
      if (sb::engine_callback_signed(kKey, body, header) != (upper(std::string(header)) == upper(mac))) __builtin_trap();
      if (!sb::engine_callback_signed(kKey, body, mac) || !sb::engine_callback_signed(kKey, body, upper(mac)))
        __builtin_trap();
      if (sb::engine_callback_signed("another key", body, mac)) __builtin_trap();
      const auto cb = sb::parse_engine_callback(body);
      if (cb.id.empty() || cb.at.empty()) __builtin_trap();
      if (auto r = sb::engine_record(cb, "tenant", "session")) check_record(*r);
    } else {
      const auto mac = sb::hmac_hex(sb::HmacDigest::Sha256, kSecret, body), sig = "sha256=" + mac;
      const bool genuine = header.substr(0, 7) == "sha256=" && upper(std::string(header.substr(7))) == upper(mac);
      if (sb::cloud_callback_signed(kSecret, body, header) != genuine) __builtin_trap();
      if (!sb::cloud_callback_signed(kSecret, body, sig)) __builtin_trap();
      if (sb::cloud_callback_signed("", body, sig) || sb::cloud_callback_signed(kSecret, body, sig.substr(7)))
        __builtin_trap();
      for (const auto& f : sb::parse_cloud_callback(body)) check_record(f.record);
    }
  } catch (const sb::InvalidInput&) {
    // a 400: the documented refusal
  }
  return 0;
}
