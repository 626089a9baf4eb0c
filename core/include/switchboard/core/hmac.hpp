#pragma once
// HMAC over OpenSSL's EVP_MAC, for the signatures providers put on their callbacks (WAHA:
// hex HMAC-SHA512 in X-Webhook-Hmac; Cloud API: "sha256=" + hex HMAC-SHA256 in
// X-Hub-Signature-256) and for our own Standard Webhooks signatures (base64 HMAC-SHA256).
#include <string>
#include <string_view>

namespace sb {

enum class HmacDigest { Sha256, Sha512 };

// The raw MAC bytes of `parts` concatenated (fed in pieces, nothing copied). Throws
// sb::Error(Internal) only if OpenSSL itself fails.
std::string hmac_raw(HmacDigest digest, std::string_view key, std::initializer_list<std::string_view> parts);
// Lower-case hex of the MAC of `body`.
std::string hmac_hex(HmacDigest digest, std::string_view key, std::string_view body);
std::string to_hex(std::string_view bytes);

// Compares in constant time for equal lengths (CRYPTO_memcmp), so a response's timing tells
// nothing about the expected signature. Different lengths: false.
bool equal_constant_time(std::string_view a, std::string_view b);

// True when `hex_signature` (case-insensitive hex) is the MAC of body under key.
bool hmac_hex_matches(HmacDigest digest, std::string_view key, std::string_view body, std::string_view hex_signature);

}  // namespace sb
