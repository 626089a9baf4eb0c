#include "switchboard/core/webhook_signature.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <memory>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/base64.hpp"
#include "switchboard/core/hmac.hpp"

namespace sb {
namespace {

constexpr std::string_view kPrefix = "whsec_";
constexpr std::size_t kMinKeyBytes = 24;
constexpr std::size_t kMaxKeyBytes = 64;
constexpr std::size_t kNewKeyBytes = 32;

// base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), fed in pieces so the body is not copied.
std::string signature_for(const std::string& key, std::string_view signed_prefix,
                          std::string_view body) {
  return base64_encode(hmac_raw(HmacDigest::Sha256, key, {signed_prefix, body}));
}

std::string signed_prefix(const std::string& msg_id, std::string_view timestamp) {
  std::string s;
  s.reserve(msg_id.size() + timestamp.size() + 2);
  s.append(msg_id).append(1, '.').append(timestamp).append(1, '.');
  return s;
}

// The header must be a plain non-negative decimal integer (no sign, spaces or fraction).
bool parse_timestamp(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

WebhookSecret parse_webhook_secret(const std::string& whsec) {
  if (whsec.compare(0, kPrefix.size(), kPrefix) != 0) {
    throw InvalidInput("webhook secret must start with \"whsec_\"");
  }
  std::string key, why;
  if (!base64_decode(std::string_view(whsec).substr(kPrefix.size()), key, why)) {
    throw InvalidInput("webhook secret: the base64 after \"whsec_\" " + why);
  }
  if (key.size() < kMinKeyBytes || key.size() > kMaxKeyBytes) {
    throw InvalidInput("webhook secret key is " + std::to_string(key.size()) +
                       " bytes; it must be between 24 and 64 bytes");
  }
  return WebhookSecret{whsec, std::move(key)};
}

std::string new_webhook_secret() {
  unsigned char key[kNewKeyBytes];
  if (RAND_bytes(key, sizeof key) != 1) {
    throw Error(ErrorKind::Internal, "OpenSSL: RAND_bytes failed to generate a webhook secret");
  }
  std::string encoded =
      std::string(kPrefix) + base64_encode(std::string_view(reinterpret_cast<char*>(key), sizeof key));
  OPENSSL_cleanse(key, sizeof key);
  return encoded;
}

std::string sign_webhook(const std::vector<WebhookSecret>& secrets, const std::string& msg_id,
                         int64_t timestamp, std::string_view body) {
  if (secrets.empty()) throw InvalidInput("sign_webhook: no secrets to sign with");
  if (msg_id.empty()) throw InvalidInput("sign_webhook: the message id is empty");
  if (timestamp < 0) throw InvalidInput("sign_webhook: the timestamp is negative");
  const std::string prefix = signed_prefix(msg_id, std::to_string(timestamp));
  std::string header;
  for (const auto& s : secrets) {
    if (s.key.empty()) throw InvalidInput("sign_webhook: a secret has an empty key");
    if (!header.empty()) header.push_back(' ');
    header.append("v1,").append(signature_for(s.key, prefix, body));
  }
  return header;
}

bool verify_webhook(const std::vector<WebhookSecret>& secrets, const std::string& msg_id,
                    const std::string& timestamp_header, const std::string& signature_header,
                    std::string_view body, int64_t now, int64_t tolerance_s) {
  int64_t ts = 0;
  if (!parse_timestamp(timestamp_header, ts) || tolerance_s < 0) return false;
  // Distance in unsigned arithmetic: exact for any pair of int64 values, no overflow.
  const uint64_t distance = now >= ts ? static_cast<uint64_t>(now) - static_cast<uint64_t>(ts)
                                      : static_cast<uint64_t>(ts) - static_cast<uint64_t>(now);
  if (distance > static_cast<uint64_t>(tolerance_s)) return false;

  const std::string prefix = signed_prefix(msg_id, timestamp_header);
  std::vector<std::string> expected;
  expected.reserve(secrets.size());
  for (const auto& s : secrets) {
    if (!s.key.empty()) expected.push_back(signature_for(s.key, prefix, body));
  }

  bool matched = false;
  std::string_view rest = signature_header;
  while (!rest.empty()) {
    const std::size_t sp = rest.find(' ');
    const std::string_view token = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    const std::size_t comma = token.find(',');
    if (comma == std::string_view::npos || token.substr(0, comma) != "v1") continue;
    const std::string_view sig = token.substr(comma + 1);
    for (const auto& e : expected) {
      // Lengths are public (always 44 for SHA-256); only the contents need constant time.
      if (equal_constant_time(sig, e)) {
        matched = true;
      }
    }
  }
  return matched;
}

}  // namespace sb
