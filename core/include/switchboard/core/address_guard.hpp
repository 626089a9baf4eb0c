#pragma once
// SSRF guard for outbound calls to tenant-supplied URLs (webhooks): decides whether an IP
// address may be connected to. Loopback, private (RFC 1918, IPv6 ULA), link-local, CGNAT,
// unspecified, multicast, broadcast, documentation/benchmark ranges and cloud metadata
// addresses (169.254.169.254, fd00:ec2::254) are refused unless an allow-list CIDR covers them.
// IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are judged as their IPv4 address.
#include <curl/curl.h>

#include <optional>
#include <string>
#include <vector>

namespace sb {

class AddressGuard {
 public:
  // allow: CIDRs ("127.0.0.0/8", "::1/128", "10.1.2.3/32") that are permitted despite the above.
  // Throws ConfigError naming a malformed CIDR.
  explicit AddressGuard(const std::vector<std::string>& allow = {});
  // nullopt when allowed, else the reason ("loopback address 127.0.0.1 is not allowed").
  std::optional<std::string> check(const std::string& ip) const;
  // Resolves host (getaddrinfo) and checks every address; nullopt when all are allowed.
  // Used when a URL is registered; the connect-time check below is the one that matters
  // (DNS can change between registration and delivery).
  std::optional<std::string> check_host(const std::string& host) const;
  // Installs the guard on a curl easy handle: CURLOPT_OPENSOCKETFUNCTION refuses forbidden
  // addresses at connect time (the transfer then fails with CURLE_COULDNT_CONNECT and
  // last_refusal() says why). The guard must outlive the handle's transfers.
  void install(CURL* curl) const;
  // Per-transfer form, for many transfers driven by one thread (curl multi), where
  // last_refusal() cannot tell which transfer was refused: the reason also goes to
  // slot->reason. The slot is the callback's data, so it must stay at its address until the
  // handle's transfers are done (its owner keeps one per transfer). install() clears it.
  struct RefusalSlot {
    const AddressGuard* guard = nullptr;  // set by install()
    std::string reason;                   // why a connect was refused; empty when none was
  };
  void install(CURL* curl, RefusalSlot* slot) const;
  // The reason of the most recent refusal on this thread (for error messages).
  static std::string last_refusal();

 private:
  struct Cidr {
    int family;                 // AF_INET or AF_INET6
    unsigned char bytes[16];
    int prefix;
  };
  std::vector<Cidr> allow_;
};

}  // namespace sb
