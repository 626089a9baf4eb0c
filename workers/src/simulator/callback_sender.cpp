#include "callback_sender.hpp"

#include <algorithm>

#include "switchboard/core/log.hpp"

namespace sb::sim {

namespace {
AsyncHttpClient::Options client_options() {
  AsyncHttpClient::Options o;
  o.user_agent = "switchboard-simulator";
  return o;
}
}  // namespace

CallbackSender::CallbackSender(Options options, Schedule schedule)
    : options_(options), schedule_(std::move(schedule)), client_(client_options()) {}

CallbackSender::~CallbackSender() { shut_down(); }

void CallbackSender::shut_down() {
  std::lock_guard lock(mu_);
  stopped_ = true;
}

void CallbackSender::enqueue(const std::string& key, Callback callback) {
  bool start = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    Queue& q = queues_[key];
    q.items.push_back(std::move(callback));
    if (!q.busy) {
      q.busy = true;
      q.attempts = 0;
      start = true;
    }
  }
  if (start) send_head(key);
}

void CallbackSender::send_head(const std::string& key) {
  HttpRequest request;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    auto it = queues_.find(key);
    if (it == queues_.end() || it->second.items.empty()) return;
    const Callback& head = it->second.items.front();
    ++it->second.attempts;
    request.method = "POST";
    request.url = head.url;
    request.headers = head.headers;
    request.body = head.body;
    request.timeout_ms = options_.timeout_ms;
    request.connect_timeout_ms = std::min(options_.timeout_ms, 2000);
  }
  client_.submit(std::move(request), [this, key](HttpResponse response) { on_answer(key, response); });
}

void CallbackSender::on_answer(const std::string& key, const HttpResponse& response) {
  const bool ok = response.transport_ok() && response.status >= 200 && response.status < 300;
  bool next = false;
  int wait_ms = 0;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    auto it = queues_.find(key);
    if (it == queues_.end() || it->second.items.empty()) return;
    Queue& q = it->second;
    const Callback& head = q.items.front();
    const std::string outcome = response.transport_ok() ? std::to_string(response.status) : response.error;
    if (!ok && q.attempts <= options_.retries) {
      // Doubling back-off: backoff_ms, 2×, 4× … capped at 10 s.
      const int shift = std::min(q.attempts - 1, 16);
      wait_ms = static_cast<int>(std::min<int64_t>(int64_t{options_.backoff_ms} << shift, 10000));
      log::info("simulator.callback_retry", {{"key", key}, {"event", head.what}, {"url", head.url},
                                             {"outcome", outcome}, {"attempt", std::to_string(q.attempts)},
                                             {"wait_ms", std::to_string(wait_ms)}});
    } else {
      if (!ok)
        log::warn("simulator.callback_given_up", {{"key", key}, {"event", head.what}, {"url", head.url},
                                                 {"outcome", outcome}, {"attempts", std::to_string(q.attempts)}});
      q.items.pop_front();
      q.attempts = 0;
      if (q.items.empty()) {
        queues_.erase(it);
      } else {
        next = true;
      }
    }
  }
  if (next) return send_head(key);
  if (wait_ms > 0) schedule_(std::chrono::milliseconds(wait_ms), [this, key] { send_head(key); });
}

}  // namespace sb::sim
