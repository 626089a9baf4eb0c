#include "switchboard/core/http_client.hpp"

#include "curl_transfer.hpp"

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

size_t on_body(char* data, size_t size, size_t nmemb, void* userdata) {
  auto* r = static_cast<HttpResponse*>(userdata);
  r->body.append(data, size * nmemb);
  return size * nmemb;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
           return std::tolower(x) == std::tolower(y);
         });
}

}  // namespace

HttpClient::HttpClient(int timeout_ms, int connect_timeout_ms)
    : timeout_ms_(timeout_ms), connect_timeout_ms_(connect_timeout_ms) {
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
  auto header_list = curl_transfer::header_list(headers);
  curl_transfer::set_options(c, url, method, body, header_list.get(), timeout_ms_, connect_timeout_ms_, "switchboard",
                             errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &curl_transfer::collect_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);

  const CURLcode rc = curl_easy_perform(c);

  double total_s = 0;
  if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &total_s) == CURLE_OK) r.elapsed_ms = total_s * 1000.0;

  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  } else {
    r.error = curl_transfer::describe_failure(c, rc, errbuf, timeout_ms_, connect_timeout_ms_);
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
