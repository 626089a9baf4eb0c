#include "switchboard/workers/http_provider.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "switchboard/core/http_client.hpp"
#include <future>
#include "switchboard/core/log.hpp"
#include "switchboard/workers/providers/http_outcome.hpp"

namespace sb {

namespace {

using json = nlohmann::json;

constexpr int kConnectTimeoutMs = 2000;

const char* to_string(SendResult::Status s) {
  switch (s) {
    case SendResult::Status::Sent: return "sent";
    case SendResult::Status::Rejected: return "rejected";
    case SendResult::Status::RetryableError: return "retryable_error";
  }
  return "?";
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
      out = interpret_send(resp, where, [](const nlohmann::json& j) {
        auto it = j.find("provider_message_id");
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
      }, "provider_message_id");
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
