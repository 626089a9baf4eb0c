#include "switchboard/core/address_guard.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "switchboard/core/errors.hpp"

namespace sb {

namespace {

// Written by the curl callback, read by last_refusal(). Thread-local because one guard may be
// installed on handles driven by several worker threads at once.
thread_local std::string t_last_refusal;

constexpr const char* kHint = " is not allowed (allow it with webhooks.allow_cidrs)";

// A parsed address or network, in network byte order (4 bytes used for AF_INET).
struct Net {
  int family = 0;
  std::array<unsigned char, 16> bytes{};
  int prefix = 0;
};

bool parse_ip(std::string_view text, Net& out) {
  // inet_pton needs a NUL-terminated string; it is also strict (no "127.1", no octal, no zone
  // ids), so anything it rejects is treated as "not an IP" rather than guessed at.
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET;
    out.prefix = 32;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET6;
    out.prefix = 128;
    return true;
  }
  return false;
}

bool parse_cidr(std::string_view text, Net& out) {
  const auto slash = text.find('/');
  if (!parse_ip(text.substr(0, slash), out)) return false;
  if (slash == std::string_view::npos) return true;  // bare address: a single host
  const std::string_view p = text.substr(slash + 1);
  int prefix = -1;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size()) return false;
  if (prefix < 0 || prefix > (out.family == AF_INET ? 32 : 128)) return false;
  out.prefix = prefix;
  return true;
}

bool prefix_match(const unsigned char* addr, const unsigned char* net, int prefix) {
  const int full = prefix / 8;
  if (std::memcmp(addr, net, static_cast<size_t>(full)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xFF << (8 - rest));
  return (addr[full] & mask) == (net[full] & mask);
}

bool contains(const Net& net, const Net& addr) {
  return net.family == addr.family && prefix_match(addr.bytes.data(), net.bytes.data(), net.prefix);
}

std::string format(const Net& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family, a.bytes.data(), buf, sizeof buf);
  return buf;
}

// If a is IPv6 and embeds an IPv4 address the kernel or a translator would really talk to,
// returns that IPv4 address and names the embedding.
//   ::ffff:0:0/96  IPv4-mapped: a dual-stack socket connecting here reaches the IPv4 host.
//   64:ff9b::/96   NAT64 well-known prefix: the translator forwards to the embedded IPv4.
bool embedded_v4(const Net& a, Net& v4, const char*& how) {
  if (a.family != AF_INET6) return false;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  static const unsigned char kNat64[12] = {0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
    how = "IPv4-mapped";
  } else if (std::memcmp(a.bytes.data(), kNat64, 12) == 0) {
    how = "NAT64";
  } else {
    return false;
  }
  v4 = Net{};
  v4.family = AF_INET;
  v4.prefix = 32;
  std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
  return true;
}

struct Refused {
  Net net;
  const char* kind;  // "loopback" → "loopback address 127.0.0.1 is not allowed ..."
};

// Refused ranges; the first match names the reason, so specific entries precede the ranges
// that contain them (metadata before link-local/ULA, broadcast before 240/4, ::1 before ::/96).
const std::vector<Refused>& refused_ranges() {
  static const std::vector<Refused> table = [] {
    const std::pair<const char*, const char*> spec[] = {
        {"169.254.169.254/32", "cloud metadata"},  // AWS/GCP/Azure/... instance metadata
        {"255.255.255.255/32", "broadcast"},
        {"0.0.0.0/8", "unspecified"},  // Linux connects 0.0.0.0 to the local host
        {"10.0.0.0/8", "private"},
        {"100.64.0.0/10", "shared (CGNAT)"},
        {"127.0.0.0/8", "loopback"},
        {"169.254.0.0/16", "link-local"},
        {"172.16.0.0/12", "private"},
        {"192.0.0.0/24", "IETF protocol assignment"},
        {"192.0.2.0/24", "documentation"},
        {"192.168.0.0/16", "private"},
        {"198.18.0.0/15", "benchmarking"},
        {"198.51.100.0/24", "documentation"},
        {"203.0.113.0/24", "documentation"},
        {"224.0.0.0/4", "multicast"},
        {"240.0.0.0/4", "reserved"},
        {"::/128", "unspecified"},
        {"::1/128", "loopback"},
        {"fd00:ec2::254/128", "cloud metadata"},  // AWS IMDS over IPv6
        {"fc00::/7", "unique local (private)"},
        {"fe80::/10", "link-local"},
        {"ff00::/8", "multicast"},
        {"2001:db8::/32", "documentation"},
        // Deprecated IPv4-compatible form (::a.b.c.d); never a legitimate destination.
        {"::/96", "IPv4-compatible (deprecated)"},
    };
    std::vector<Refused> out;
    for (const auto& [cidr, kind] : spec) {
      Refused r{{}, kind};
      if (!parse_cidr(cidr, r.net)) throw std::logic_error(std::string("bad built-in CIDR ") + cidr);
      out.push_back(r);
    }
    return out;
  }();
  return table;
}

const char* refused_kind(const Net& a) {
  for (const auto& r : refused_ranges())
    if (contains(r.net, a)) return r.kind;
  return nullptr;
}

// Shared by both callbacks: opens the socket, or records why not (in *slot_reason as well
// when the transfer has its own slot) and refuses.
curl_socket_t judge_and_open(const AddressGuard* guard, curl_sockaddr* address, std::string* slot_reason) {
  // Every purpose is judged, not only CURLSOCKTYPE_IPCXN: refusing is the safe default for
  // anything unexpected. Non-IP families (AF_UNIX via CURLOPT_UNIX_SOCKET_PATH) are refused too.
  const auto refuse = [&](std::string why) {
    if (slot_reason) *slot_reason = why;
    t_last_refusal = std::move(why);
    return CURL_SOCKET_BAD;  // curl tries the next address, then fails with COULDNT_CONNECT
  };
  sockaddr_storage ss{};
  std::memcpy(&ss, &address->addr, std::min<size_t>(address->addrlen, sizeof ss));
  char buf[INET6_ADDRSTRLEN] = {};
  const char* text = nullptr;
  if (address->family == AF_INET && ss.ss_family == AF_INET) {
    text = inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (address->family == AF_INET6 && ss.ss_family == AF_INET6) {
    text = inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  }
  if (text == nullptr) return refuse("address family " + std::to_string(address->family) + " is not allowed");
  if (auto reason = guard->check(text)) return refuse(std::move(*reason));
#ifdef SOCK_CLOEXEC
  // Not inherited by child processes (curl's own default socket() does not ask for this).
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
#else
  return socket(address->family, address->socktype, address->protocol);
#endif
}

curl_socket_t open_socket(void* clientp, curlsocktype /*purpose*/, curl_sockaddr* address) {
  return judge_and_open(static_cast<const AddressGuard*>(clientp), address, nullptr);
}

curl_socket_t open_socket_slot(void* clientp, curlsocktype /*purpose*/, curl_sockaddr* address) {
  auto* slot = static_cast<AddressGuard::RefusalSlot*>(clientp);
  return judge_and_open(slot->guard, address, &slot->reason);
}

}  // namespace

AddressGuard::AddressGuard(const std::vector<std::string>& allow) {
  for (const auto& raw : allow) {
    std::string_view s(raw);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    Net n;
    if (!parse_cidr(s, n))
      throw ConfigError("webhooks.allow_cidrs: invalid CIDR '" + raw +
                        "' (expected a.b.c.d/n, an IPv6 address/n, or a bare address)");
    // "::ffff:10.0.0.0/104" means the same hosts as "10.0.0.0/8"; store it as IPv4 so one
    // comparison covers both spellings.
    Net v4;
    const char* how = nullptr;
    if (n.prefix >= 96 && embedded_v4(n, v4, how) && std::strcmp(how, "IPv4-mapped") == 0) {
      v4.prefix = n.prefix - 96;
      n = v4;
    }
    Cidr c{};
    c.family = n.family;
    std::memcpy(c.bytes, n.bytes.data(), sizeof c.bytes);
    c.prefix = n.prefix;
    allow_.push_back(c);
  }
}

std::optional<std::string> AddressGuard::check(const std::string& ip) const {
  Net a;
  if (!parse_ip(ip, a)) return "'" + ip + "' is not an IP address";

  Net v4;
  const char* how = nullptr;
  const bool has_v4 = embedded_v4(a, v4, how);

  // The allow list wins over every refusal. An IPv4 CIDR also covers the embedded forms,
  // since connecting to those reaches the same IPv4 host.
  for (const auto& c : allow_) {
    if (c.family == a.family && prefix_match(a.bytes.data(), c.bytes, c.prefix)) return std::nullopt;
    if (has_v4 && c.family == AF_INET && prefix_match(v4.bytes.data(), c.bytes, c.prefix))
      return std::nullopt;
  }

  if (has_v4) {
    if (const char* kind = refused_kind(v4))
      return std::string(kind) + " address " + format(v4) + " (in " + how + " address " + format(a) +
             ")" + kHint;
    return std::nullopt;
  }
  if (const char* kind = refused_kind(a)) return std::string(kind) + " address " + format(a) + kHint;
  return std::nullopt;
}

std::optional<std::string> AddressGuard::check_host(const std::string& host) const {
  // URL hosts spell IPv6 literals in brackets ("[::1]"); getaddrinfo wants them bare.
  std::string name = host;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;      // judge both A and AAAA answers: curl may use either
  hints.ai_socktype = SOCK_STREAM;  // one entry per address instead of one per socket type
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    if (res != nullptr) freeaddrinfo(res);
    return "cannot resolve host '" + host + "': " + gai_strerror(rc);
  }
  std::optional<std::string> reason;
  for (const addrinfo* ai = res; ai != nullptr && !reason; ai = ai->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const char* text = nullptr;
    if (ai->ai_family == AF_INET)
      text = inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof buf);
    else if (ai->ai_family == AF_INET6)
      text = inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf, sizeof buf);
    if (text == nullptr) continue;
    if (auto r = check(text)) reason = "host '" + host + "': " + *r;
  }
  freeaddrinfo(res);
  return reason;
}

void AddressGuard::install(CURL* curl) const {
  // The check runs when curl opens each socket, i.e. on the address actually connected to:
  // after DNS (so rebinding between registration and delivery does not help), for every
  // address curl tries, and for every hop of a followed redirect. Install before the first
  // transfer: a kept-alive connection opened earlier is reused without opening a socket.
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, static_cast<curl_opensocket_callback>(&open_socket));
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, const_cast<AddressGuard*>(this));
  // Through a proxy the socket goes to the proxy, and the proxy would fetch the forbidden
  // target for us; so no proxy at all, including ones picked up from http_proxy/https_proxy/
  // ALL_PROXY in the environment and an explicit CURLOPT_PROXY. A deployment that routes webhooks
  // through a filtering egress proxy can reset CURLOPT_NOPROXY after install (the guard then
  // only judges the proxy's own address).
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  // Webhooks are HTTP(S). Other schemes are SSRF tools of their own: file:// reads local files
  // without opening a socket at all, gopher:// and dict:// let a URL write raw bytes to a port.
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

void AddressGuard::install(CURL* curl, RefusalSlot* slot) const {
  install(curl);  // proxy and protocol limits as above; the socket callback is replaced below
  slot->guard = this;
  slot->reason.clear();
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, static_cast<curl_opensocket_callback>(&open_socket_slot));
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, slot);
}

std::string AddressGuard::last_refusal() { return t_last_refusal; }

}  // namespace sb
