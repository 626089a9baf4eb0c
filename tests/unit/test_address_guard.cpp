// AddressGuard: the address table, the allow list, host resolution and the connect-time curl
// hook. Public addresses are only ever passed to check(), never connected to; the curl tests talk
// to an in-process cpp-httplib server on 127.0.0.1 only.
#include <curl/curl.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/errors.hpp"

namespace {

using Catch::Matchers::Contains;

struct Case {
  const char* ip;
  const char* reason;  // nullptr: allowed; else a substring of the refusal reason
};

const Case kCases[] = {
    // Public: allowed.
    {"8.8.8.8", nullptr},
    {"1.1.1.1", nullptr},
    {"2606:4700:4700::1111", nullptr},
    {"::ffff:8.8.8.8", nullptr},
    {"64:ff9b::808:808", nullptr},
    {"100.63.255.255", nullptr},  // just below CGNAT
    {"100.128.0.0", nullptr},     // just above CGNAT
    {"172.15.255.255", nullptr},  // just below 172.16/12
    {"172.32.0.0", nullptr},      // just above
    {"198.20.0.0", nullptr},      // just above 198.18/15
    {"223.255.255.255", nullptr}, // just below multicast
    {"2001:db9::1", nullptr},     // just above documentation
    // IPv4 refused ranges.
    {"0.0.0.0", "unspecified address 0.0.0.0"},
    {"0.1.2.3", "unspecified address 0.1.2.3"},
    {"10.0.0.1", "private address 10.0.0.1"},
    {"10.255.255.255", "private address"},
    {"100.64.0.1", "CGNAT"},
    {"100.127.255.254", "CGNAT"},
    {"127.0.0.1", "loopback address 127.0.0.1 is not allowed (allow it with webhooks.allow_cidrs)"},
    {"127.255.255.254", "loopback"},
    {"169.254.0.1", "link-local address 169.254.0.1"},
    {"169.254.169.254", "cloud metadata address 169.254.169.254"},
    {"172.16.0.1", "private address 172.16.0.1"},
    {"172.31.255.255", "private"},
    {"192.0.0.8", "IETF protocol assignment"},
    {"192.0.2.1", "documentation address 192.0.2.1"},
    {"192.168.1.1", "private address 192.168.1.1"},
    {"198.18.0.1", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"198.51.100.7", "documentation"},
    {"203.0.113.9", "documentation"},
    {"224.0.0.1", "multicast address 224.0.0.1"},
    {"239.255.255.250", "multicast"},
    {"240.0.0.1", "reserved address 240.0.0.1"},
    {"255.255.255.255", "broadcast address 255.255.255.255"},
    // IPv6 refused ranges.
    {"::", "unspecified address ::"},
    {"::1", "loopback address ::1"},
    {"fc00::1", "unique local"},
    {"fd12:3456::1", "unique local"},
    {"fd00:ec2::254", "cloud metadata address fd00:ec2::254"},
    {"fe80::1", "link-local address fe80::1"},
    {"febf::1", "link-local"},
    {"ff02::1", "multicast address ff02::1"},
    {"2001:db8::1", "documentation address 2001:db8::1"},
    {"::7f00:1", "IPv4-compatible"},
    // Embedded IPv4: judged as the IPv4 address.
    {"::ffff:127.0.0.1", "loopback address 127.0.0.1 (in IPv4-mapped address ::ffff:127.0.0.1)"},
    {"::FFFF:10.1.2.3", "private address 10.1.2.3"},
    {"::ffff:169.254.169.254", "cloud metadata"},
    {"64:ff9b::7f00:1", "loopback address 127.0.0.1 (in NAT64 address 64:ff9b::7f00:1)"},
    {"64:ff9b::a9fe:a9fe", "cloud metadata address 169.254.169.254"},
    // Not IP addresses (inet_pton is strict: no shorthand, no octal, no names).
    {"localhost", "not an IP address"},
    {"", "not an IP address"},
    {"127.1", "not an IP address"},
    {"0177.0.0.1", "not an IP address"},
    {"1.2.3.4/32", "not an IP address"},
    {"[::1]", "not an IP address"},
    {"fe80::1%eth0", "not an IP address"},
};

// A cpp-httplib server on 127.0.0.1:<any port>, serving on its own thread until destroyed.
class LocalServer {
 public:
  LocalServer() {
    // Counts every request, whatever its path (a proxied request carries an absolute URL).
    server_.set_pre_routing_handler([this](const httplib::Request&, httplib::Response&) {
      ++requests_;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server_.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is a no-op until the accept loop runs, so wait for it before anyone may stop.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!server_.is_running()) {
      server_.stop();
      thread_.detach();
      FAIL("cpp-httplib server did not start");
    }
  }
  ~LocalServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  int requests() const { return requests_.load(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::atomic<int> requests_{0};
};

size_t discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

struct Transfer {
  CURLcode code;
  long status;
};

// One GET with a raw easy handle; extra runs after install() (to override options).
template <typename Extra>
Transfer get(const sb::AddressGuard& guard, const std::string& url, Extra extra) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  REQUIRE(curl != nullptr);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &discard);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  guard.install(curl);
  extra(curl);
  Transfer t{curl_easy_perform(curl), 0};
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &t.status);
  curl_easy_cleanup(curl);
  return t;
}
Transfer get(const sb::AddressGuard& guard, const std::string& url) {
  return get(guard, url, [](CURL*) {});
}

}  // namespace

TEST_CASE("AddressGuard judges addresses by range", "[unit][ssrf]") {
  const sb::AddressGuard guard;
  for (const auto& c : kCases) {
    INFO("ip: '" << c.ip << "'");
    const auto reason = guard.check(c.ip);
    if (c.reason == nullptr) {
      CHECK(reason.value_or("") == "");  // prints the unexpected refusal
    } else {
      REQUIRE(reason.has_value());
      CHECK_THAT(*reason, Contains(c.reason));
    }
  }
}

TEST_CASE("AddressGuard allow list overrides refusals", "[unit][ssrf]") {
  SECTION("an IPv4 CIDR covers its addresses and their IPv4-mapped form, nothing else") {
    const sb::AddressGuard guard({"127.0.0.0/8"});
    CHECK_FALSE(guard.check("127.0.0.1"));
    CHECK_FALSE(guard.check("127.9.9.9"));
    CHECK_FALSE(guard.check("::ffff:127.0.0.1"));
    REQUIRE(guard.check("10.0.0.1"));
    CHECK_THAT(*guard.check("10.0.0.1"), Contains("private"));
    CHECK(guard.check("::1"));  // IPv6 loopback is a different address
    CHECK_FALSE(guard.check("8.8.8.8"));
  }
  SECTION("bare addresses are single hosts") {
    const sb::AddressGuard guard({"10.1.2.3", "::1"});
    CHECK_FALSE(guard.check("10.1.2.3"));
    CHECK(guard.check("10.1.2.4"));
    CHECK_FALSE(guard.check("::1"));
    CHECK(guard.check("127.0.0.1"));
  }
  SECTION("IPv6 CIDRs, odd prefix lengths, surrounding blanks") {
    const sb::AddressGuard guard({" fd00::/8 ", "192.168.4.0/23", "::ffff:172.16.0.0/108"});
    CHECK_FALSE(guard.check("fd12::1"));
    CHECK(guard.check("fc00::1"));
    CHECK_FALSE(guard.check("192.168.4.1"));
    CHECK_FALSE(guard.check("192.168.5.254"));
    CHECK(guard.check("192.168.6.1"));
    // "::ffff:172.16.0.0/108" is 172.16.0.0/12 spelled as IPv6: it covers both forms.
    CHECK_FALSE(guard.check("172.20.0.1"));
    CHECK_FALSE(guard.check("::ffff:172.20.0.1"));
  }
  SECTION("an allow-list entry does not admit non-IP strings") {
    const sb::AddressGuard guard({"0.0.0.0/0", "::/0"});
    CHECK_FALSE(guard.check("169.254.169.254"));
    CHECK_FALSE(guard.check("::1"));
    CHECK(guard.check("localhost"));
  }
}

TEST_CASE("AddressGuard rejects malformed allow CIDRs", "[unit][ssrf]") {
  for (const char* bad : {"10.0.0.0/33", "nope", "::1/129", "", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x",
                          "10.0.0/8", "/8", "fe80::/+1"}) {
    INFO("cidr: '" << bad << "'");
    CHECK_THROWS_AS(sb::AddressGuard({bad}), sb::ConfigError);
  }
  try {
    sb::AddressGuard guard({"127.0.0.0/8", "10.0.0.0/33"});
    FAIL("no ConfigError");
  } catch (const sb::ConfigError& e) {
    CHECK_THAT(e.what(), Contains("10.0.0.0/33"));
  }
  CHECK_NOTHROW(sb::AddressGuard({"0.0.0.0/0", "::/0", "1.2.3.4/32", "::1/128", "10.0.0.0/8"}));
}

TEST_CASE("AddressGuard::check_host resolves and checks every address", "[unit][ssrf]") {
  const sb::AddressGuard guard;
  const auto local = guard.check_host("localhost");
  REQUIRE(local.has_value());
  CHECK_THAT(*local, Contains("loopback"));
  CHECK_THAT(*local, Contains("localhost"));

  // Numeric hosts resolve without DNS.
  CHECK_FALSE(guard.check_host("8.8.8.8"));
  CHECK_FALSE(guard.check_host("[2606:4700:4700::1111]"));
  CHECK(guard.check_host("127.0.0.1"));
  CHECK(guard.check_host("[::1]"));
  CHECK_FALSE(sb::AddressGuard({"127.0.0.0/8"}).check_host("127.0.0.1"));

  // An empty name fails inside getaddrinfo without a DNS query (a real unknown name would ask
  // the configured resolver: slow and network-dependent).
  const auto bad = guard.check_host("");
  REQUIRE(bad.has_value());
  CHECK_THAT(*bad, Contains("cannot resolve host ''"));
}

TEST_CASE("AddressGuard::install refuses forbidden addresses at connect time", "[unit][ssrf]") {
  LocalServer server;

  SECTION("default guard: loopback refused, server never reached") {
    const Transfer t = get(sb::AddressGuard(), server.url());
    CHECK(t.code == CURLE_COULDNT_CONNECT);
    CHECK_THAT(sb::AddressGuard::last_refusal(), Contains("loopback"));
    CHECK_THAT(sb::AddressGuard::last_refusal(), Contains("127.0.0.1"));
    CHECK(server.requests() == 0);
  }
  SECTION("guard allowing 127.0.0.0/8: request goes through") {
    const Transfer t = get(sb::AddressGuard({"127.0.0.0/8"}), server.url());
    CHECK(t.code == CURLE_OK);
    CHECK(t.status == 200);
    CHECK(server.requests() == 1);
  }
  SECTION("a proxy cannot carry the request past the guard") {
    // The allowed local server poses as a proxy; the target is a private address. Without
    // CURLOPT_NOPROXY "*" curl would connect to the (allowed) proxy and ask it for the target.
    const sb::AddressGuard guard({"127.0.0.0/8"});
    const std::string proxy = "http://127.0.0.1:" + std::to_string(server.port());
    const Transfer t = get(guard, "http://10.255.255.1:8080/",
                           [&](CURL* curl) { curl_easy_setopt(curl, CURLOPT_PROXY, proxy.c_str()); });
    CHECK(t.code == CURLE_COULDNT_CONNECT);
    CHECK_THAT(sb::AddressGuard::last_refusal(), Contains("private address 10.255.255.1"));
    CHECK(server.requests() == 0);
  }
  SECTION("only http and https") {
    const Transfer t = get(sb::AddressGuard(), "file:///etc/hostname");
    CHECK(t.code == CURLE_UNSUPPORTED_PROTOCOL);
  }
}
