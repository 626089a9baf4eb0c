#include "curl_transfer.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace sb::curl_transfer {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

SlistPtr header_list(const std::vector<std::pair<std::string, std::string>>& headers) {
  SlistPtr list;
  auto add = [&](const std::string& line) {
    if (curl_slist* l = curl_slist_append(list.get(), line.c_str())) {
      (void)list.release();  // l now owns the old list
      list.reset(l);
    }
  };
  for (const auto& [k, v] : headers) add(k + ": " + v);
  add("Expect:");
  return list;
}

size_t collect_header(char* data, size_t size, size_t nmemb, void* response) {
  auto* r = static_cast<HttpResponse*>(response);
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

void set_options(CURL* c, const std::string& url, const std::string& method, const std::string& body,
                 curl_slist* headers, int timeout_ms, int connect_timeout_ms, const char* user_agent, char* errbuf) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we are multithreaded
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
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
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
}

std::string describe_failure(CURL* c, CURLcode rc, const char* errbuf, int timeout_ms, int connect_timeout_ms) {
  const std::string detail = errbuf && errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    double connect_s = 0;
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME, &connect_s);
    return connect_s > 0 ? "timeout after " + std::to_string(timeout_ms) + " ms"
                         : "connect timeout after " + std::to_string(connect_timeout_ms) + " ms";
  }
  if (rc == CURLE_COULDNT_CONNECT) return "connection refused or unreachable (" + detail + ")";
  if (rc == CURLE_COULDNT_RESOLVE_HOST) return "cannot resolve host (" + detail + ")";
  return std::string(curl_easy_strerror(rc)) + " (" + detail + ")";
}

}  // namespace sb::curl_transfer
