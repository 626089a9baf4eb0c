#pragma once
// Blocking HTTP client over libcurl. One HttpClient owns one CURL easy handle (so its
// connections are reused across calls); it is NOT thread-safe: use one per thread.
#include <curl/curl.h>

#include <memory>
#include <string>
#include <vector>

namespace sb {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct HttpResponse {
  long status = 0;             // 0 when no response was received
  std::string body;
  std::string error;           // transport error (timeout, refused, …); empty when a response arrived
  // The request went out (bytes written): on a transport error the server may have acted on it
  // (a timeout after sending), so a non-idempotent call must not be blindly repeated.
  bool request_sent = false;
  double elapsed_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-cased names
  bool transport_ok() const { return error.empty(); }
};

class HttpClient {
 public:
  explicit HttpClient(int timeout_ms = 10000, int connect_timeout_ms = 2000);
  // Never throws for network failures: they come back in HttpResponse::error.
  HttpResponse request(const std::string& method, const std::string& url, const std::string& body = {},
                       const std::vector<std::pair<std::string, std::string>>& headers = {});
  HttpResponse get(const std::string& url) { return request("GET", url); }
  HttpResponse post_json(const std::string& url, const std::string& body,
                         std::vector<std::pair<std::string, std::string>> headers = {});

 private:
  CurlPtr curl_;
  int timeout_ms_;
  int connect_timeout_ms_;
};

// curl_global_init once per process, before threads start (called by HttpClient too).
void http_global_init();

}  // namespace sb
