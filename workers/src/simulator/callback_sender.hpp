#pragma once
// Posts the simulator's callbacks (WAHA webhooks, Cloud API notifications) the way providers
// do: in order per key (a session, a phone number) — one request at a time per key — retried
// on a transport error or a non-2xx answer with doubling back-off, then given up (logged).
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.hpp"
#include "switchboard/core/http_async.hpp"

namespace sb::sim {

struct Callback {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // signed when enqueued
  std::string body;
  std::string what;  // for logs: the event name
};

class CallbackSender {
 public:
  struct Options {
    int retries = 8;
    int backoff_ms = 200;   // before retry 1; doubled each retry, capped at 10 s
    int timeout_ms = 5000;  // one attempt
  };
  CallbackSender(Options options, Schedule schedule);
  ~CallbackSender();
  CallbackSender(const CallbackSender&) = delete;
  CallbackSender& operator=(const CallbackSender&) = delete;

  // Thread-safe; callbacks under one key go out in enqueue order.
  void enqueue(const std::string& key, Callback callback);
  // Stops sending and retrying (the schedule's server is stopping); idempotent.
  void shut_down();
  // The HTTP client, for one-off requests (the Cloud API verification handshake).
  AsyncHttpClient& http() { return client_; }

 private:
  struct Queue {
    std::deque<Callback> items;
    bool busy = false;   // the head is in flight or waiting for its retry
    int attempts = 0;    // of the head
  };
  void send_head(const std::string& key);
  void on_answer(const std::string& key, const HttpResponse& response);

  Options options_;
  Schedule schedule_;
  std::mutex mu_;
  std::unordered_map<std::string, Queue> queues_;
  bool stopped_ = false;
  AsyncHttpClient client_;  // last: its callbacks reach everything above
};

}  // namespace sb::sim
