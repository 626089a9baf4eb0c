#include <catch2/catch.hpp>

#include "switchboard/core/hmac.hpp"

using namespace sb;

TEST_CASE("hmac: the WAHA docs' X-Webhook-Hmac test vector (HMAC-SHA512, hex)", "[unit][hmac]") {
  const std::string body = R"({"event":"message","session":"default","engine":"WEBJS"})";
  const auto mac = hmac_hex(HmacDigest::Sha512, "my-secret-key", body);
  CHECK(mac.size() == 128);
  CHECK(mac.rfind("208f8a55dde9e055", 0) == 0);
  CHECK(mac.substr(mac.size() - 8) == "6153fa89");
  CHECK(hmac_hex_matches(HmacDigest::Sha512, "my-secret-key", body, mac));
  CHECK_FALSE(hmac_hex_matches(HmacDigest::Sha512, "my-secret-key", body + " ", mac));
  CHECK_FALSE(hmac_hex_matches(HmacDigest::Sha512, "other-key", body, mac));
}

TEST_CASE("hmac: RFC 4231 test case 2 for SHA-256 and SHA-512, hex compare is case-insensitive", "[unit][hmac]") {
  const std::string data = "what do ya want for nothing?";
  CHECK(hmac_hex(HmacDigest::Sha256, "Jefe", data) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_hex(HmacDigest::Sha512, "Jefe", data) ==
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
  CHECK(hmac_hex_matches(HmacDigest::Sha256, "Jefe", data, "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"));
  CHECK_FALSE(hmac_hex_matches(HmacDigest::Sha256, "Jefe", data, "5bdcc146"));
  CHECK_FALSE(hmac_hex_matches(HmacDigest::Sha256, "Jefe", data, ""));
}
