#pragma once
// Standard Webhooks (https://www.standardwebhooks.com) signing and verification.
//
// Every outbound webhook carries three headers:
//   webhook-id         the message id (stable across retries, so receivers can dedupe)
//   webhook-timestamp  unix seconds when this attempt was signed (receivers reject stale ones,
//                      which bounds how long a captured request can be replayed)
//   webhook-signature  "v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>", one per active
//                      secret, space separated
// We follow the spec exactly (rather than a home-grown scheme) so receivers can verify with any
// of the official libraries; tests check our output against the Python one.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb {

// Header names, lower case as the spec writes them (HTTP header names are case-insensitive).
inline constexpr std::string_view kWebhookIdHeader = "webhook-id";
inline constexpr std::string_view kWebhookTimestampHeader = "webhook-timestamp";
inline constexpr std::string_view kWebhookSignatureHeader = "webhook-signature";

struct WebhookSecret {
  std::string encoded;  // "whsec_" + standard base64 (with '=' padding) of `key`: what users see
  std::string key;      // the raw HMAC key bytes (24..64 bytes, as the spec requires)
};

// Parses a "whsec_..." secret. Throws sb::InvalidInput naming the problem: missing prefix, bad
// base64 (standard alphabet; '=' padding optional, as in the official libraries, but must be
// right if present; base64url is rejected because the official Python library silently drops
// '-' and '_' and would derive a different key), or a key shorter than 24 / longer than 64 bytes.
WebhookSecret parse_webhook_secret(const std::string& whsec);

// A fresh secret: "whsec_" + base64 of 32 bytes from OpenSSL's CSPRNG (RAND_bytes).
std::string new_webhook_secret();

// The webhook-signature header value: one "v1,<sig>" per secret, space separated, in the given
// order. Several secrets are used during a rotation window, so a receiver that only knows the old
// (or only the new) secret still verifies. Throws sb::InvalidInput for no secrets, an empty key,
// an empty msg_id or a negative timestamp (none of them can produce a verifiable message).
std::string sign_webhook(const std::vector<WebhookSecret>& secrets, const std::string& msg_id,
                         int64_t timestamp, std::string_view body);

// Our own verifier (used by tests of receivers and by docs examples). True when the timestamp
// header is a plain decimal integer with |now - timestamp| <= tolerance_s, and any "v1,"
// signature in the header matches any of the secrets. Signatures are compared in constant time
// (CRYPTO_memcmp) so response timing reveals nothing about the expected value; other versions
// (e.g. "v1a,") are ignored, as the spec asks. Never throws on malformed headers: returns false.
bool verify_webhook(const std::vector<WebhookSecret>& secrets, const std::string& msg_id,
                    const std::string& timestamp_header, const std::string& signature_header,
                    std::string_view body, int64_t now, int64_t tolerance_s = 300);

}  // namespace sb
