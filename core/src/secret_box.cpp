#include "switchboard/core/secret_box.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "switchboard/core/base64.hpp"
#include "switchboard/core/errors.hpp"

namespace sb {

namespace {

constexpr unsigned char kVersion = 1;
constexpr std::size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

CipherCtx new_ctx() {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw Error(ErrorKind::Internal, "OpenSSL: EVP_CIPHER_CTX_new failed");
  return ctx;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

void require_key(const std::string& key) {
  if (key.empty())
    throw ConfigError("secrets.key is not set: provider credentials are stored encrypted; set secrets.key (or the env "
                      "SWITCHBOARD_SECRETS_KEY) to base64 of 32 random bytes, e.g. `openssl rand -base64 32`");
}

}  // namespace

SecretBox::SecretBox(const std::string& base64_key) {
  if (base64_key.empty()) return;
  std::string raw, why;
  if (!base64_decode(base64_key, raw, why)) throw ConfigError("config key 'secrets.key': the value " + why);
  if (raw.size() != kKeyBytes)
    throw ConfigError("config key 'secrets.key': expected base64 of 32 bytes, got " + std::to_string(raw.size()) +
                      " bytes (make one with `openssl rand -base64 32`)");
  key_ = std::move(raw);
}

std::string SecretBox::new_key() {
  unsigned char raw[kKeyBytes];
  if (RAND_bytes(raw, sizeof raw) != 1) throw Error(ErrorKind::Internal, "OpenSSL: RAND_bytes failed");
  return base64_encode(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view associated) const {
  require_key(key_);
  std::string out(1 + kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  o[0] = kVersion;
  if (RAND_bytes(o + 1, kNonceBytes) != 1) throw Error(ErrorKind::Internal, "OpenSSL: RAND_bytes failed");
  auto ctx = new_ctx();
  int n = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key_), o + 1) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n, bytes(associated), static_cast<int>(associated.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o + 1 + kNonceBytes, &n, bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + 1 + kNonceBytes + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, o + 1 + kNonceBytes + plaintext.size()) != 1)
    throw Error(ErrorKind::Internal, "OpenSSL: AES-256-GCM encryption failed");
  return out;
}

std::string SecretBox::open(std::string_view sealed, std::string_view associated) const {
  require_key(key_);
  if (sealed.size() < 1 + kNonceBytes + kTagBytes || static_cast<unsigned char>(sealed[0]) != kVersion)
    throw InvalidInput("sealed secret: not in the sealed format (version 1)");
  const auto* s = bytes(sealed);
  const std::size_t len = sealed.size() - 1 - kNonceBytes - kTagBytes;
  std::string out(len, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  auto ctx = new_ctx();
  int n = 0;
  std::string tag(sealed.substr(1 + kNonceBytes + len));
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key_), s + 1) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, bytes(associated), static_cast<int>(associated.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), o, &n, s + 1 + kNonceBytes, static_cast<int>(len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), o + n, &n) != 1)
    throw InvalidInput("sealed secret: does not open with secrets.key (another key, or tampered with)");
  return out;
}

std::string seal_session_secrets(const SecretBox& box, const std::string& tenant, const std::string& session,
                                 const nlohmann::json& secrets) {
  return base64_encode(box.seal(secrets.dump(), tenant + "/" + session));
}

nlohmann::json open_session_secrets(const SecretBox& box, const std::string& tenant, const std::string& session,
                                    const std::string& stored) {
  std::string sealed, why;
  if (stored.empty()) throw InvalidInput("session '" + session + "' has no stored credentials");
  if (!base64_decode(stored, sealed, why)) throw InvalidInput("session '" + session + "': stored credentials " + why);
  return nlohmann::json::parse(box.open(sealed, tenant + "/" + session));
}

}  // namespace sb
