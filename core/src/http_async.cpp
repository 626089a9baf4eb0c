#include "switchboard/core/http_async.hpp"

#include "curl_transfer.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

#include "switchboard/core/address_guard.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

// Idle easy handles kept for reuse (each holds a TLS session cache and some buffers); beyond
// this a finished handle is freed. Connections live in the multi handle's cache, not here.
constexpr std::size_t kMaxIdleHandles = 256;

HttpResponse shut_down_response() {
  HttpResponse r;
  r.error = "client shut down";
  return r;
}

}  // namespace

struct AsyncHttpClient::Transfer {
  // Owned here because curl keeps pointers into it: POSTFIELDS and CUSTOMREQUEST do not copy.
  HttpRequest request;
  Callback done;
  HttpResponse response;
  curl_transfer::SlistPtr header_list;
  char errbuf[CURL_ERROR_SIZE] = {0};
  AddressGuard::RefusalSlot refusal;  // the guard's per-transfer callback data
  CurlPtr easy;  // last, so it is cleaned up before the data its options point to

  static size_t on_body(char* data, size_t size, size_t nmemb, void* userdata) {
    auto* t = static_cast<Transfer*>(userdata);
    const size_t n = size * nmemb;
    // Keep a prefix, but read the rest: failing the write would turn a big 200 into an error.
    const size_t room = t->request.max_body_bytes - std::min(t->request.max_body_bytes, t->response.body.size());
    t->response.body.append(data, std::min(n, room));
    return n;
  }
};

AsyncHttpClient::AsyncHttpClient(Options options) : options_(std::move(options)) {
  http_global_init();
  multi_.reset(curl_multi_init());
  if (!multi_) throw Unavailable("cannot create a curl multi handle");
  CURLM* m = multi_.get();
  curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, options_.max_total_connections);
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, options_.max_host_connections);
  if (options_.max_connects > 0) curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, options_.max_connects);
  loop_ = std::thread([this] { run(); });
}

AsyncHttpClient::~AsyncHttpClient() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_.get());
  loop_.join();
  // active_ and idle_handles_ are empty or hold removed handles; multi_ is cleaned up last.
}

void AsyncHttpClient::submit(HttpRequest request, Callback done) {
  ++in_flight_;
  {
    std::lock_guard lock(mu_);
    if (!stopped_) {
      queue_.push_back(Pending{std::move(request), std::move(done)});
      // Inside the lock so the destructor cannot clean up the multi handle in between.
      curl_multi_wakeup(multi_.get());
      return;
    }
  }
  // The loop is gone (submit() racing the destructor): fail here rather than never.
  deliver(done, shut_down_response());
}

std::size_t AsyncHttpClient::in_flight() const { return in_flight_.load(); }

void AsyncHttpClient::deliver(Callback& done, HttpResponse r) {
  try {
    if (done) done(std::move(r));
  } catch (const std::exception& e) {
    log::error("http_async_callback_failed", {{"error", e.what()}});
  } catch (...) {
    log::error("http_async_callback_failed", {{"error", "unknown exception"}});
  }
  --in_flight_;
}

void AsyncHttpClient::run() {
  CURLM* m = multi_.get();
  for (;;) {
    std::deque<Pending> batch;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
      batch.swap(queue_);
    }
    for (auto& p : batch) start(std::move(p));

    int running = 0;
    if (const CURLMcode rc = curl_multi_perform(m, &running); rc != CURLM_OK)
      log::error("http_async_perform_failed", {{"error", curl_multi_strerror(rc)}});
    collect_done();  // callbacks may submit(): the wakeup makes the poll below return at once

    // Sleeps until a socket is ready, curl's next timeout, a wakeup, or 1 s.
    if (const CURLMcode rc = curl_multi_poll(m, nullptr, 0, 1000, nullptr); rc != CURLM_OK)
      log::error("http_async_poll_failed", {{"error", curl_multi_strerror(rc)}});
  }
  shut_down();
}

void AsyncHttpClient::start(Pending pending) {
  auto t = std::make_unique<Transfer>();
  t->request = std::move(pending.request);
  t->done = std::move(pending.done);
  if (!idle_handles_.empty()) {
    t->easy = std::move(idle_handles_.back());
    idle_handles_.pop_back();
  } else {
    t->easy.reset(curl_easy_init());
  }
  if (!t->easy) {
    t->response.error = "cannot create a curl handle";
    deliver(t->done, std::move(t->response));
    return;
  }
  CURL* c = t->easy.get();
  const HttpRequest& rq = t->request;

  t->header_list = curl_transfer::header_list(rq.headers);
  curl_transfer::set_options(c, rq.url, rq.method, rq.body, t->header_list.get(), rq.timeout_ms, rq.connect_timeout_ms,
                             options_.user_agent.c_str(), t->errbuf);
  if (options_.guard) options_.guard->install(c, &t->refusal);  // per transfer: one thread, many transfers
  curl_easy_setopt(c, CURLOPT_PRIVATE, static_cast<void*>(t.get()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Transfer::on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, static_cast<void*>(t.get()));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &curl_transfer::collect_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, static_cast<void*>(&t->response));

  if (const CURLMcode rc = curl_multi_add_handle(multi_.get(), c); rc != CURLM_OK) {
    t->response.error = std::string("cannot start the transfer (") + curl_multi_strerror(rc) + ")";
    curl_easy_reset(c);
    deliver(t->done, std::move(t->response));
    return;
  }
  Transfer* raw = t.get();
  active_.emplace(raw, std::move(t));
}

void AsyncHttpClient::collect_done() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    char* priv = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    // Copy the result first: msg is invalid once the handle is removed.
    finish(reinterpret_cast<Transfer*>(priv), msg->data.result);
  }
}

void AsyncHttpClient::finish(Transfer* t, CURLcode rc) {
  auto owned = std::move(active_.at(t));
  active_.erase(t);
  CURL* c = t->easy.get();
  curl_multi_remove_handle(multi_.get(), c);

  HttpResponse& r = t->response;
  double total_s = 0;
  if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &total_s) == CURLE_OK) r.elapsed_ms = total_s * 1000.0;

  long request_bytes = 0;
  if (curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_bytes) == CURLE_OK) r.request_sent = request_bytes > 0;
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  } else {
    r.error = curl_transfer::describe_failure(c, rc, t->errbuf, t->request.timeout_ms, t->request.connect_timeout_ms);
    if (!t->refusal.reason.empty()) r.error += " (" + t->refusal.reason + ")";
    // No complete response: status 0 (a partial body would be misleading).
    r.status = 0;
    r.body.clear();
    r.headers.clear();
  }

  // Drop every option pointing into *t; connections, DNS and TLS session caches survive.
  curl_easy_reset(c);
  if (idle_handles_.size() < kMaxIdleHandles) idle_handles_.push_back(std::move(t->easy));
  deliver(t->done, std::move(r));
}

void AsyncHttpClient::shut_down() {
  while (!active_.empty()) {
    auto it = active_.begin();
    std::unique_ptr<Transfer> t = std::move(it->second);
    active_.erase(it);
    curl_multi_remove_handle(multi_.get(), t->easy.get());
    deliver(t->done, shut_down_response());
  }
  // Callbacks above may have queued more; keep failing until the queue stays empty, then
  // close it so later submit() calls fail inline.
  for (;;) {
    std::deque<Pending> batch;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty()) {
        stopped_ = true;
        break;
      }
      batch.swap(queue_);
    }
    for (auto& p : batch) deliver(p.done, shut_down_response());
  }
  idle_handles_.clear();
}

}  // namespace sb
