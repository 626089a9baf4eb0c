// Standard Webhooks signing (switchboard/core/webhook_signature.hpp). The expected signatures
// were computed independently with Python's stdlib (hmac + hashlib + base64), not with our code:
//   base64.b64encode(hmac.new(key, f"{id}.{ts}.".encode() + body, hashlib.sha256).digest())
// The first one is also the vector the official standard-webhooks libraries test against.
// tests/integration/test_webhook_signature_oracle.cpp checks against the official Python library.
#include <catch2/catch.hpp>

#include <limits>
#include <set>
#include <string>
#include <vector>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/webhook_signature.hpp"

namespace {

// The standard-webhooks libraries' own test vector.
const std::string kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const std::string kSpecId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr int64_t kSpecTs = 1614265330;
const std::string kSpecBody = R"({"test": 2432232314})";
const std::string kSpecSig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// 64-byte key 00 01 .. 3f (two '=' of padding), empty body.
const std::string k64Secret =
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
    "Pw==";
// 26-byte key 0x64 .. 0x7d (one '=' of padding).
const std::string k26Secret = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH0=";

std::vector<sb::WebhookSecret> one(const std::string& whsec) {
  return {sb::parse_webhook_secret(whsec)};
}

}  // namespace

TEST_CASE("webhooks: the published test vector signs and verifies", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  REQUIRE(secrets[0].key.size() == 24);
  CHECK(secrets[0].encoded == kSpecSecret);
  CHECK(sb::sign_webhook(secrets, kSpecId, kSpecTs, kSpecBody) == kSpecSig);
  CHECK(sb::verify_webhook(secrets, kSpecId, std::to_string(kSpecTs), kSpecSig, kSpecBody, kSpecTs));
}

TEST_CASE("webhooks: padded keys decode to their true length and sign like Python", "[unit][webhooks]") {
  auto s64 = one(k64Secret);
  REQUIRE(s64[0].key.size() == 64);
  for (int i = 0; i < 64; ++i) CHECK(static_cast<unsigned char>(s64[0].key[i]) == i);
  CHECK(sb::sign_webhook(s64, "msg_2", 1700000000, "") ==
        "v1,0KvQCpiyztJ8qDr4Flii5VxC1C/iQjgjCbMnL6UXGzA=");

  auto s26 = one(k26Secret);
  REQUIRE(s26[0].key.size() == 26);
  CHECK(static_cast<unsigned char>(s26[0].key.back()) == 0x7d);
  CHECK(sb::sign_webhook(s26, "msg_3", 1700000001, R"({"a":1})") ==
        "v1,v0okOmxVk4ZHIrZfYQD3rGCgof2ilmO4OYa1VSngKuc=");
}

TEST_CASE("webhooks: tampering with body, id or timestamp fails verification", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  const std::string ts = std::to_string(kSpecTs);
  REQUIRE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig, kSpecBody, kSpecTs));

  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig, R"({"test": 2432232315})", kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig, kSpecBody + " ", kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig, "", kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId + "x", ts, kSpecSig, kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, "", ts, kSpecSig, kSpecBody, kSpecTs));
  // A timestamp one second off, still within tolerance: the signature no longer matches.
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, std::to_string(kSpecTs + 1), kSpecSig, kSpecBody, kSpecTs));
  // Wrong key.
  CHECK_FALSE(sb::verify_webhook(one(k26Secret), kSpecId, ts, kSpecSig, kSpecBody, kSpecTs));
  // Tampered signature: one character flipped, truncated, or under another version.
  std::string flipped = kSpecSig;
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, flipped, kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig.substr(0, kSpecSig.size() - 1), kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, "v2" + kSpecSig.substr(2), kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, kSpecSig.substr(3), kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, ts, "", kSpecBody, kSpecTs));
}

TEST_CASE("webhooks: the signature header may list other signatures and versions", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  const std::string ts = std::to_string(kSpecTs);
  const std::string header = "v1a,AAAA v1,bm90IGl0 " + kSpecSig + "  v2,xyz";
  CHECK(sb::verify_webhook(secrets, kSpecId, ts, header, kSpecBody, kSpecTs));
}

TEST_CASE("webhooks: timestamps outside the tolerance fail", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  const std::string ts = std::to_string(kSpecTs);
  auto at = [&](int64_t now, int64_t tolerance = 300) {
    return sb::verify_webhook(secrets, kSpecId, ts, kSpecSig, kSpecBody, now, tolerance);
  };
  CHECK(at(kSpecTs + 300));   // exactly at the edge: accepted
  CHECK(at(kSpecTs - 300));
  CHECK_FALSE(at(kSpecTs + 301));  // too old
  CHECK_FALSE(at(kSpecTs - 301));  // from the future
  CHECK_FALSE(at(kSpecTs + 86400));
  CHECK_FALSE(at(0));
  CHECK(at(kSpecTs + 30, 60));
  CHECK_FALSE(at(kSpecTs + 61, 60));
  CHECK_FALSE(at(kSpecTs, -1));
  // Extremes do not overflow into acceptance.
  CHECK_FALSE(at(std::numeric_limits<int64_t>::min()));
  CHECK_FALSE(at(std::numeric_limits<int64_t>::max()));
}

TEST_CASE("webhooks: malformed timestamp headers fail", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  for (const std::string bad : {"", " 1614265330", "1614265330 ", "+1614265330", "1614265330.0",
                                "-1614265330", "0x603", "abc", "99999999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(sb::verify_webhook(secrets, kSpecId, bad, kSpecSig, kSpecBody, kSpecTs));
  }
}

TEST_CASE("webhooks: rotation signs with every secret, each verifies alone", "[unit][webhooks]") {
  auto old_secret = sb::parse_webhook_secret(kSpecSecret);
  auto new_secret = sb::parse_webhook_secret(k64Secret);
  const std::string header = sb::sign_webhook({old_secret, new_secret}, kSpecId, kSpecTs, kSpecBody);

  const auto space = header.find(' ');
  REQUIRE(space != std::string::npos);
  CHECK(header.substr(0, space) == kSpecSig);  // same order as the secrets
  CHECK(header.substr(space + 1).rfind("v1,", 0) == 0);
  CHECK(header.find(' ', space + 1) == std::string::npos);
  CHECK(header.substr(space + 1) == sb::sign_webhook({new_secret}, kSpecId, kSpecTs, kSpecBody));

  const std::string ts = std::to_string(kSpecTs);
  CHECK(sb::verify_webhook({old_secret}, kSpecId, ts, header, kSpecBody, kSpecTs));
  CHECK(sb::verify_webhook({new_secret}, kSpecId, ts, header, kSpecBody, kSpecTs));
  CHECK(sb::verify_webhook({old_secret, new_secret}, kSpecId, ts, header, kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook(one(k26Secret), kSpecId, ts, header, kSpecBody, kSpecTs));
  CHECK_FALSE(sb::verify_webhook({}, kSpecId, ts, header, kSpecBody, kSpecTs));
}

TEST_CASE("webhooks: malformed secrets throw InvalidInput naming the problem", "[unit][webhooks]") {
  using Catch::Matchers::Contains;
  auto msg = [](const std::string& s) -> std::string {
    try {
      sb::parse_webhook_secret(s);
    } catch (const sb::InvalidInput& e) {
      return e.what();
    }
    return "<no exception>";
  };
  CHECK_THAT(msg("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Contains("whsec_"));
  CHECK_THAT(msg("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Contains("whsec_"));
  CHECK_THAT(msg(""), Contains("whsec_"));
  CHECK_THAT(msg("whsec_"), Contains("empty"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwM"), Contains("33 characters"));
  CHECK_THAT(msg("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fA="), Contains("1 '=' of padding"));  // needs "=="
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=="), Contains("2 '=' of padding"));  // needs none
  CHECK_THAT(msg("whsec_=="), Contains("padding"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjU*D8ILPZIo2LaLaSw"), Contains("base64 alphabet"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaS"), Contains("base64 alphabet"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), Contains("base64 alphabet"));
  CHECK_THAT(msg(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Contains("whsec_"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjU-D8ILPZIo2LaLa_w"), Contains("base64url"));
  CHECK_THAT(msg("whsec_MfKQ9r8G==qrTwjUPD8ILPZIo2LaLaSw"), Contains("middle"));
  CHECK_THAT(msg("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa=="), Contains("22 bytes"));
  // Unpadded base64 is accepted, as the official libraries do, and decodes to the same key.
  CHECK(sb::parse_webhook_secret("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH0").key ==
        sb::parse_webhook_secret(k26Secret).key);
  CHECK(sb::parse_webhook_secret("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fA").key.size() == 25);
  // 23 bytes (too short), 65 bytes (too long).
  CHECK_THAT(msg("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo="), Contains("23 bytes"));
  CHECK_THAT(msg("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKTlJWWl5iZmpucnZ6foKGio6Q="),
             Contains("65 bytes"));
  // The boundaries themselves are fine.
  CHECK_NOTHROW(sb::parse_webhook_secret("whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"));  // 24
  CHECK_NOTHROW(sb::parse_webhook_secret(k64Secret));                                 // 64
}

TEST_CASE("webhooks: sign_webhook rejects inputs that cannot verify", "[unit][webhooks]") {
  auto secrets = one(kSpecSecret);
  CHECK_THROWS_AS(sb::sign_webhook({}, kSpecId, kSpecTs, kSpecBody), sb::InvalidInput);
  CHECK_THROWS_AS(sb::sign_webhook(secrets, "", kSpecTs, kSpecBody), sb::InvalidInput);
  CHECK_THROWS_AS(sb::sign_webhook(secrets, kSpecId, -1, kSpecBody), sb::InvalidInput);
  CHECK_THROWS_AS(sb::sign_webhook({sb::WebhookSecret{}}, kSpecId, kSpecTs, kSpecBody), sb::InvalidInput);
}

TEST_CASE("webhooks: new_webhook_secret round-trips through parse", "[unit][webhooks]") {
  std::set<std::string> seen;
  for (int i = 0; i < 16; ++i) {
    const std::string s = sb::new_webhook_secret();
    CHECK(s.rfind("whsec_", 0) == 0);
    CHECK(s.size() == 6 + 44);  // base64 of 32 bytes
    auto parsed = sb::parse_webhook_secret(s);
    CHECK(parsed.key.size() == 32);
    CHECK(parsed.encoded == s);
    seen.insert(parsed.key);
    const std::string header = sb::sign_webhook({parsed}, "msg_x", 1700000000, "body");
    CHECK(sb::verify_webhook({parsed}, "msg_x", "1700000000", header, "body", 1700000000));
  }
  CHECK(seen.size() == 16);
}
