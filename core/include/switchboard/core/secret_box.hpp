#pragma once
// Provider credentials at rest (Cloud API tokens and app secrets, engine API keys, webhook HMAC
// keys): sealed with AES-256-GCM under one key from config (`secrets.key`, base64 of 32 bytes,
// usually from the env SWITCHBOARD_SECRETS_KEY), so a database dump or backup leaks nothing
// usable. The tag authenticates the row's identity too (associated data), so a sealed value
// copied onto another session's row does not open there.
//
// Sealed format: 0x01 | 12-byte random nonce | ciphertext | 16-byte tag.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sb {

class SecretBox {
 public:
  // Throws ConfigError naming `secrets.key` when the key is missing, not base64 or not 32 bytes.
  explicit SecretBox(const std::string& base64_key);
  // An unusable box: seal/open throw ConfigError saying secrets.key must be set.
  SecretBox() = default;

  bool usable() const { return !key_.empty(); }
  std::string seal(std::string_view plaintext, std::string_view associated) const;
  // Throws InvalidInput when the value was not sealed by this key for this associated data.
  std::string open(std::string_view sealed, std::string_view associated) const;

  // A fresh key in the config's format (for `scripts/dev` and docs).
  static std::string new_key();

 private:
  std::string key_;
};

// A session's credentials as stored in sessions.secrets: base64 of the sealed JSON, bound to
// "tenant/session". The one place that format is written and read.
std::string seal_session_secrets(const SecretBox& box, const std::string& tenant, const std::string& session,
                                 const nlohmann::json& secrets);
// Throws InvalidInput when the value is missing, not base64 or does not open for this session.
nlohmann::json open_session_secrets(const SecretBox& box, const std::string& tenant, const std::string& session,
                                    const std::string& stored);

}  // namespace sb
