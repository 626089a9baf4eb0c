#pragma once
// Non-blocking HTTP client over libcurl's multi interface: one loop thread drives every
// transfer, so thousands of requests (webhook deliveries) can be in flight at once, and the
// multi handle's connection cache reuses keep-alive connections across them. Same conventions
// as HttpClient: no redirects, http/https only, lower-cased response header names, network
// failures reported in HttpResponse::error (never thrown).
#include <curl/curl.h>

#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "switchboard/core/http_client.hpp"

namespace sb {

class AddressGuard;

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int timeout_ms = 15000;  // whole transfer
  int connect_timeout_ms = 5000;
  std::size_t max_body_bytes = 64 * 1024;  // response body kept up to this (the rest is read and dropped)
};

class AsyncHttpClient {
 public:
  struct Options {
    long max_total_connections = 0;       // CURLMOPT_MAX_TOTAL_CONNECTIONS, 0 = unlimited
    long max_host_connections = 0;        // CURLMOPT_MAX_HOST_CONNECTIONS, 0 = unlimited
    long max_connects = 0;                // CURLMOPT_MAXCONNECTS cache size, 0 = curl default
    const AddressGuard* guard = nullptr;  // when set, installed on every transfer (tenant URLs); must outlive the client
    std::string user_agent = "switchboard";
  };
  using Callback = std::function<void(HttpResponse)>;

  // Starts the loop thread. Throws Unavailable when curl cannot create its multi handle.
  explicit AsyncHttpClient(Options options);
  // Stops the loop thread; transfers still running or queued complete with error
  // "client shut down" (callbacks still run exactly once, on the loop thread). Must not be
  // called from a callback.
  ~AsyncHttpClient();
  AsyncHttpClient(const AsyncHttpClient&) = delete;
  AsyncHttpClient& operator=(const AsyncHttpClient&) = delete;

  // Thread-safe. `done` runs exactly once, on the client's loop thread; it must be quick and
  // must not throw (exceptions are caught and logged) and may call submit() again.
  void submit(HttpRequest request, Callback done);
  std::size_t in_flight() const;  // submitted, callback not yet run

 private:
  struct Transfer;  // per-transfer state, reachable from its easy handle via CURLOPT_PRIVATE
  struct Pending {
    HttpRequest request;
    Callback done;
  };
  struct MultiDeleter {
    void operator()(CURLM* m) const { curl_multi_cleanup(m); }
  };

  void run();                                   // the loop thread
  void start(Pending pending);                  // set up an easy handle and add it to the multi
  void collect_done();                          // finished transfers → callbacks
  void finish(Transfer* t, CURLcode rc);        // remove, fill the response, run the callback
  void shut_down();                             // fail everything in flight or queued
  void deliver(Callback& done, HttpResponse r); // run a callback, once, exceptions logged

  Options options_;
  std::unique_ptr<CURLM, MultiDeleter> multi_;

  mutable std::mutex mu_;
  std::deque<Pending> queue_;  // submitted, not yet started (guarded by mu_)
  bool stopping_ = false;      // destructor called (guarded by mu_)
  bool stopped_ = false;       // loop gone: submit() fails inline (guarded by mu_)

  std::atomic<std::size_t> in_flight_{0};

  // Loop thread only.
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> active_;
  std::vector<CurlPtr> idle_handles_;  // reset easy handles kept for their TLS session cache

  std::thread loop_;  // last: starts after everything above is ready
};

}  // namespace sb
