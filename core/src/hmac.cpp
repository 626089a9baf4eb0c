#include "switchboard/core/hmac.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cctype>
#include <memory>

#include "switchboard/core/errors.hpp"

namespace sb {

namespace {

struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

// The HMAC algorithm object, fetched once: fetching is a provider lookup, and an EVP_MAC is
// safe to share between threads (each call gets its own EVP_MAC_CTX).
EVP_MAC* hmac_algorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) throw Error(ErrorKind::Internal, "OpenSSL: EVP_MAC_fetch(HMAC) failed");
  return mac;
}

}  // namespace

std::string hmac_raw(HmacDigest digest, std::string_view key, std::initializer_list<std::string_view> parts) {
  std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter> ctx(EVP_MAC_CTX_new(hmac_algorithm()));
  if (!ctx) throw Error(ErrorKind::Internal, "OpenSSL: EVP_MAC_CTX_new failed");
  char sha256[] = "SHA256";
  char sha512[] = "SHA512";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest == HmacDigest::Sha256 ? sha256 : sha512, 0),
      OSSL_PARAM_construct_end(),
  };
  // An empty key is legal HMAC; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const auto* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  if (EVP_MAC_init(ctx.get(), k, key.size(), params) != 1) throw Error(ErrorKind::Internal, "OpenSSL: HMAC init failed");
  for (auto p : parts)
    if (!p.empty() && EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(p.data()), p.size()) != 1)
      throw Error(ErrorKind::Internal, "OpenSSL: HMAC update failed");
  unsigned char out[EVP_MAX_MD_SIZE];
  std::size_t out_len = 0;
  if (EVP_MAC_final(ctx.get(), out, &out_len, sizeof out) != 1) throw Error(ErrorKind::Internal, "OpenSSL: HMAC final failed");
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    s.push_back(digits[c >> 4]);
    s.push_back(digits[c & 15]);
  }
  return s;
}

std::string hmac_hex(HmacDigest digest, std::string_view key, std::string_view body) {
  return to_hex(hmac_raw(digest, key, {body}));
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

bool hmac_hex_matches(HmacDigest digest, std::string_view key, std::string_view body, std::string_view hex_signature) {
  std::string given(hex_signature);
  for (auto& c : given) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return equal_constant_time(hmac_hex(digest, key, body), given);
}

}  // namespace sb
