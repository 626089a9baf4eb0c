#include "switchboard/core/http_client.hpp"

#include "switchboard/core/address_guard.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string_view>

namespace sb {

void http_global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

namespace {

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

size_t on_body(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* r = static_cast<HttpResponse*>(userdata);
  r->body.append(data, size * nmemb);
  return size * nmemb;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Called once per header line, status line included; a new status line (after a 100 Continue,
// for instance) starts a fresh header block so only the final response's headers are kept.
size_t on_header(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* r = static_cast<HttpResponse*>(userdata);
  const size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {
    r->headers.clear();
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;  // blank line ending the block, or junk
  std::string name(trim(line.substr(0, colon)));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  r->headers.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
  return n;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

}  // namespace

HttpClient::HttpClient(int timeout_ms, int connect_timeout_ms, const AddressGuard* guard)
    : timeout_ms_(timeout_ms), connect_timeout_ms_(connect_timeout_ms), guard_(guard) {
  http_global_init();
  curl_.reset(curl_easy_init());  // null only when out of memory: reported by request()
}

HttpResponse HttpClient::request(const std::string& method, const std::string& url, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  HttpResponse r;
  if (!curl_) {
    curl_.reset(curl_easy_init());
    if (!curl_) {
      r.error = "cannot create a curl handle";
      return r;
    }
  }
  CURL* c = curl_.get();
  // Reset options from the previous call; the handle keeps its connection, DNS and TLS caches.
  curl_easy_reset(c);

  char errbuf[CURL_ERROR_SIZE] = {0};
  SlistPtr header_list;
  auto add_header = [&](const std::string& line) {
    curl_slist* l = curl_slist_append(header_list.get(), line.c_str());
    if (l) {
      header_list.release();
      header_list.reset(l);
    }
  };
  for (const auto& [k, v] : headers) add_header(k + ": " + v);
  // curl would send "Expect: 100-continue" for larger bodies and wait a round-trip for it.
  add_header("Expect:");

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (guard_) guard_->install(c);  // after the reset, which clears it
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we are multithreaded
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_ms_));
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "switchboard");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);

  if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    if (method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST" || !body.empty()) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, header_list.get());

  const CURLcode rc = curl_easy_perform(c);

  double total_s = 0;
  if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &total_s) == CURLE_OK) r.elapsed_ms = total_s * 1000.0;

  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  } else {
    const std::string detail = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      double connect_s = 0;
      curl_easy_getinfo(c, CURLINFO_CONNECT_TIME, &connect_s);
      r.error = connect_s > 0 ? "timeout after " + std::to_string(timeout_ms_) + " ms"
                              : "connect timeout after " + std::to_string(connect_timeout_ms_) + " ms";
    } else if (rc == CURLE_COULDNT_CONNECT) {
      r.error = "connection refused or unreachable (" + detail + ")";
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST) {
      r.error = "cannot resolve host (" + detail + ")";
    } else {
      r.error = std::string(curl_easy_strerror(rc)) + " (" + detail + ")";
    }
    // No complete response: status 0 (a partial body would be misleading).
    r.status = 0;
    r.body.clear();
    r.headers.clear();
  }
  // The handle must not keep pointers into this call's locals (the next call resets it anyway).
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  return r;
}

HttpResponse HttpClient::post_json(const std::string& url, const std::string& body,
                                   std::vector<std::pair<std::string, std::string>> headers) {
  const bool has_type = std::any_of(headers.begin(), headers.end(),
                                    [](const auto& h) { return iequals(h.first, "Content-Type"); });
  if (!has_type) headers.emplace_back("Content-Type", "application/json");
  const bool has_accept =
      std::any_of(headers.begin(), headers.end(), [](const auto& h) { return iequals(h.first, "Accept"); });
  if (!has_accept) headers.emplace_back("Accept", "application/json");
  return request("POST", url, body, headers);
}

}  // namespace sb
