#include "switchboard/workers/http_provider.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "switchboard/core/http_client.hpp"
#include <future>
#include "switchboard/core/log.hpp"

namespace sb {

namespace {

using json = nlohmann::json;

constexpr size_t kExcerptBytes = 200;
constexpr int kConnectTimeoutMs = 2000;

// Length of the valid UTF-8 sequence starting at s[i], or 0 when invalid/truncated.
size_t utf8_seq_len(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  unsigned int cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Reject overlongs, surrogates and out-of-range code points.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

// The first kExcerptBytes of a response body, safe to put in logs and JSON events: valid UTF-8
// only (cut on a character boundary, bad bytes as '?'), control characters as spaces.
std::string excerpt(const std::string& body) {
  if (body.empty()) return "(empty body)";
  std::string out;
  size_t i = 0;
  while (i < body.size()) {
    const size_t n = utf8_seq_len(body, i);
    if (out.size() + std::max<size_t>(n, 1) > kExcerptBytes) break;
    if (n == 0) {
      out += '?';
      ++i;
      continue;
    }
    if (n == 1) {
      const auto c = static_cast<unsigned char>(body[i]);
      out += (c < 0x20 || c == 0x7F) ? ' ' : body[i];
    } else {
      out.append(body, i, n);
    }
    i += n;
  }
  if (i < body.size()) out += "...";
  return out;
}

bool retryable_status(long status) {
  return status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599);
}

SendResult result(SendResult::Status status, std::string error, std::string provider_id = {}) {
  SendResult r;
  r.status = status;
  r.error = std::move(error);
  r.provider_message_id = std::move(provider_id);
  return r;
}

const char* to_string(SendResult::Status s) {
  switch (s) {
    case SendResult::Status::Sent: return "sent";
    case SendResult::Status::Rejected: return "rejected";
    case SendResult::Status::RetryableError: return "retryable_error";
  }
  return "?";
}

// A response (or transport failure) of the provider's send API, as a SendResult.
SendResult interpret(const HttpResponse& resp, const std::string& where) {
  if (!resp.transport_ok()) {
    // Refused or never written: certainly not sent. Written and then lost (a timeout waiting
    // for the answer): the provider may have sent it.
    auto r = result(SendResult::Status::RetryableError, where + resp.error);
    r.maybe_delivered = resp.request_sent;
    return r;
  }
  const std::string http = "HTTP " + std::to_string(resp.status);
  if (resp.status >= 200 && resp.status <= 299) {
    std::string problem;
    try {
      const json j = json::parse(resp.body);
      if (j.is_object()) {
        auto it = j.find("provider_message_id");
        if (it != j.end() && it->is_string() && !it->get<std::string>().empty())
          return result(SendResult::Status::Sent, {}, it->get<std::string>());
      }
      problem = "no provider_message_id in the response";
    } catch (const json::exception&) {
      problem = "the response is not JSON";
    }
    // The provider answered but not in its API: a contract problem, retrying won't fix it.
    return result(SendResult::Status::Rejected, where + http + " but " + problem + ": " + excerpt(resp.body));
  }
  if (retryable_status(resp.status)) {
    auto r = result(SendResult::Status::RetryableError, where + http + ": " + excerpt(resp.body));
    // 429 and 503 say the provider declined before doing anything; other 5xx and 408 may have
    // failed after the send.
    r.maybe_delivered = !(resp.status == 429 || resp.status == 503);
    return r;
  }
  // Other 4xx (and 1xx/3xx: redirects are not followed) mean the request itself is wrong.
  return result(SendResult::Status::Rejected, where + http + ": " + excerpt(resp.body));
}

void log_send(const SendRequest& request, const SendResult& out, long status, double elapsed_ms) {
  try {
    log::debug("provider.send", {{"tenant", request.tenant_id},
                                 {"session", request.session},
                                 {"message_id", request.message_id},
                                 {"outcome", to_string(out.status)},
                                 {"http_status", std::to_string(status)},
                                 {"elapsed_ms", std::to_string(static_cast<long>(elapsed_ms))},
                                 {"provider_message_id", out.provider_message_id},
                                 {"error", out.error}});
  } catch (...) {  // logging must not turn a result into an exception
  }
}

}  // namespace

SendResult Provider::send(const SendRequest& request) {
  auto promise = std::make_shared<std::promise<SendResult>>();
  auto fut = promise->get_future();
  send(request, [promise](SendResult r) { promise->set_value(std::move(r)); });
  return fut.get();
}

HttpProvider::HttpProvider(const ProviderConfig& config)
    : config_(config), base_(config.url), client_(AsyncHttpClient::Options{}) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
}

void HttpProvider::send(const SendRequest& request, SendDone done) {
  const std::string url = base_ + "/v1/messages";
  const std::string where = "provider " + url + ": ";
  if (request.message_id.empty()) {
    // Without an idempotency key a retry could deliver twice: never send such a request.
    return done(result(SendResult::Status::Rejected, where + "empty message_id (the Idempotency-Key): not sent"));
  }
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.timeout_ms = config_.timeout_ms;
  req.connect_timeout_ms = std::min(config_.timeout_ms, kConnectTimeoutMs);
  req.headers = {{"Content-Type", "application/json"}, {"Idempotency-Key", request.message_id}};
  try {
    req.body = json{{"tenant", request.tenant_id}, {"session", request.session}, {"to", request.to}, {"text", request.text}}
                   .dump();
  } catch (const json::exception& e) {
    // Invalid UTF-8 in a field: retrying cannot fix it.
    return done(result(SendResult::Status::Rejected, where + "request cannot be encoded as JSON: " + e.what()));
  }
  client_.submit(std::move(req), [request, where, done = std::move(done)](HttpResponse resp) {
    SendResult out;
    try {
      out = interpret(resp, where);
    } catch (const std::exception& e) {
      out = result(SendResult::Status::RetryableError, where + "unexpected error: " + e.what());
      out.maybe_delivered = true;
    }
    log_send(request, out, resp.status, resp.elapsed_ms);
    done(std::move(out));
  });
}

void HttpProvider::reconcile(const SendRequest& request, ReconcileDone done) {
  if (!config_.reconcile) return Provider::reconcile(request, std::move(done));
  HttpRequest req;
  req.method = "GET";
  req.url = base_ + "/v1/messages/" + request.message_id;
  req.timeout_ms = config_.timeout_ms;
  req.connect_timeout_ms = std::min(config_.timeout_ms, kConnectTimeoutMs);
  client_.submit(std::move(req), [done = std::move(done)](HttpResponse resp) {
    ReconcileResult r;
    if (resp.transport_ok() && resp.status == 404) {
      r.status = ReconcileResult::Status::NotSent;
    } else if (resp.transport_ok() && resp.status == 200) {
      try {
        const auto j = json::parse(resp.body);
        r.status = ReconcileResult::Status::Sent;
        r.provider_message_id = j.at("provider_message_id").get<std::string>();
      } catch (const std::exception& e) {
        r.status = ReconcileResult::Status::Unknown;
        r.detail = std::string("unreadable lookup answer: ") + e.what();
      }
    } else {
      r.detail = resp.transport_ok() ? "lookup answered HTTP " + std::to_string(resp.status) : resp.error;
    }
    done(std::move(r));
  });
}

}  // namespace sb
