// Our webhook signatures, checked by an independent oracle: the official Standard Webhooks Python
// library (PyPI `standardwebhooks`, pinned in scripts/lib/python.sh) run through
// tests/tools/verify_standard_webhook.py. If this passes, any receiver using an official library
// can verify what we send. Needs SWITCHBOARD_TEST_PYTHON (exported by sb_python_tools, which
// scripts/test runs); no servers.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "switchboard/core/webhook_signature.hpp"
#include "python_tool.hpp"

using sbtest::shell_quote;

namespace {

namespace fs = std::filesystem;


// Relative to this source file (absolute in CMake builds; relative to the repository root when
// compiled by hand from there).
fs::path oracle_script() {
  return fs::path(__FILE__).parent_path().parent_path() / "tools" / "verify_standard_webhook.py";
}

struct OracleResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr, trailing newline trimmed
};

// The venv's interpreter. Called first thing in each test case, outside any assertion, so a
// missing setup fails with this message alone.
std::string oracle_python() {
  const char* py = std::getenv("SWITCHBOARD_TEST_PYTHON");
  if (!py || !*py) {
    FAIL("SWITCHBOARD_TEST_PYTHON is not set: run through scripts/test, or source "
         "scripts/lib/python.sh and run sb_python_tools (it creates the venv with standardwebhooks)");
  }
  if (!fs::exists(oracle_script())) FAIL("oracle script not found: " + oracle_script().string());
  return py;
}

// Runs the Python verifier on one message and returns what it printed ("ok" when it verified).
OracleResult oracle_verify(const std::string& secret, const std::string& id, int64_t timestamp,
                           const std::string& signature, const std::string& body) {
  const std::string py = oracle_python();
  const fs::path script = oracle_script();

  // The request goes through a temporary file: popen() gives us only one direction.
  char tmpl[] = "/tmp/sb-webhook-oracle-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) FAIL("mkstemp failed");
  close(fd);
  const std::string input_path = tmpl;
  {
    nlohmann::json req = {{"secret", secret}, {"id", id}, {"timestamp", std::to_string(timestamp)},
                          {"signature", signature}, {"body", body}};
    std::ofstream(input_path) << req.dump();
  }
  const std::string cmd = shell_quote(py) + " " + shell_quote(script.string()) + " < " +
                          shell_quote(input_path) + " 2>&1";
  OracleResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    fs::remove(input_path);
    FAIL("popen failed: " + cmd);
  }
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  fs::remove(input_path);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r')) r.output.pop_back();
  INFO("oracle command: " << cmd);
  INFO("oracle output: " << r.output);
  // 2 means the oracle itself is broken (bad input, library missing): never a verdict.
  REQUIRE(r.exit_code != 2);
  REQUIRE(r.exit_code != -1);
  return r;
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A body with the things that break naive signers: non-ASCII, newlines, quotes, a '.'.
const std::string kBody =
    "{\"to\":\"+15551234567\",\"text\":\"h\xc3\xa9llo \xe2\x9c\x93\\nline 2\",\"v\":1.5}\n";

}  // namespace

TEST_CASE("webhooks oracle: the official Python library verifies our signatures", "[integration][webhooks]") {
  oracle_python();
  // Keys of 24 (no padding), 25 ("=="), 26 ("="), 32 (fresh) and 64 bytes.
  const std::vector<std::string> secrets = {
      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fA==",
      "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH0=",
      sb::new_webhook_secret(),
      "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==",
  };
  for (const auto& whsec : secrets) {
    INFO("secret " << whsec);
    const int64_t ts = now_s();
    const std::string id = "msg_" + std::to_string(ts) + "_oracle";
    const std::string sig = sb::sign_webhook({sb::parse_webhook_secret(whsec)}, id, ts, kBody);
    auto r = oracle_verify(whsec, id, ts, sig, kBody);
    CHECK(r.output == "ok");
    CHECK(r.exit_code == 0);
  }
}

TEST_CASE("webhooks oracle: during rotation a receiver knowing only one secret verifies", "[integration][webhooks]") {
  oracle_python();
  const std::string old_whsec = sb::new_webhook_secret();
  const std::string new_whsec = sb::new_webhook_secret();
  const int64_t ts = now_s();
  const std::string id = "msg_rotation";
  const std::string header = sb::sign_webhook(
      {sb::parse_webhook_secret(old_whsec), sb::parse_webhook_secret(new_whsec)}, id, ts, kBody);
  REQUIRE(header.find(' ') != std::string::npos);

  CHECK(oracle_verify(old_whsec, id, ts, header, kBody).output == "ok");
  CHECK(oracle_verify(new_whsec, id, ts, header, kBody).output == "ok");
  // Control: a receiver with a third secret does not.
  CHECK(oracle_verify(sb::new_webhook_secret(), id, ts, header, kBody).output != "ok");
}

TEST_CASE("webhooks oracle: the official library rejects a tampered message", "[integration][webhooks]") {
  oracle_python();
  const std::string whsec = sb::new_webhook_secret();
  const int64_t ts = now_s();
  const std::string id = "msg_tamper";
  const std::string sig = sb::sign_webhook({sb::parse_webhook_secret(whsec)}, id, ts, kBody);
  REQUIRE(oracle_verify(whsec, id, ts, sig, kBody).output == "ok");

  std::string tampered = kBody;
  tampered[tampered.find("1.5")] = '9';
  auto body = oracle_verify(whsec, id, ts, sig, tampered);
  CHECK(body.exit_code == 1);
  CHECK_THAT(body.output, Catch::Matchers::Contains("No matching signature"));

  auto other_id = oracle_verify(whsec, "msg_other", ts, sig, kBody);
  CHECK(other_id.exit_code == 1);
  CHECK_THAT(other_id.output, Catch::Matchers::Contains("No matching signature"));
}
