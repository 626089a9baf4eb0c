#include <catch2/catch.hpp>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/secret_box.hpp"

using namespace sb;

TEST_CASE("secret box: seals and opens, bound to its key and its row", "[unit][secret_box]") {
  SecretBox box(SecretBox::new_key());
  const std::string secret = R"({"access_token":"EAAG-very-secret"})";
  const auto sealed = box.seal(secret, "tenant-1/s1");
  CHECK(sealed.find("very-secret") == std::string::npos);
  CHECK(box.seal(secret, "tenant-1/s1") != sealed);  // a fresh nonce each time
  CHECK(box.open(sealed, "tenant-1/s1") == secret);
  CHECK_THROWS_AS(box.open(sealed, "tenant-2/s1"), InvalidInput);  // copied onto another row
  auto tampered = sealed;
  tampered[20] ^= 1;
  CHECK_THROWS_AS(box.open(tampered, "tenant-1/s1"), InvalidInput);
  CHECK_THROWS_AS(SecretBox(SecretBox::new_key()).open(sealed, "tenant-1/s1"), InvalidInput);
  CHECK_THROWS_AS(box.open("short", "tenant-1/s1"), InvalidInput);
}

TEST_CASE("secret box: a missing or malformed secrets.key is a clear config error", "[unit][secret_box]") {
  SecretBox none;
  CHECK_FALSE(none.usable());
  CHECK_THROWS_WITH(none.seal("x", ""), Catch::Contains("secrets.key is not set"));
  CHECK_THROWS_WITH(SecretBox("c2hvcnQ="), Catch::Contains("expected base64 of 32 bytes"));
  CHECK_THROWS_WITH(SecretBox("not base64!"), Catch::Contains("secrets.key"));
}
