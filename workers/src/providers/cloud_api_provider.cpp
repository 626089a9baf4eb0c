#include "switchboard/workers/providers/cloud_api_provider.hpp"

#include <nlohmann/json.hpp>

#include "switchboard/workers/providers/http_outcome.hpp"

namespace sb {

using json = nlohmann::json;

CloudApiProvider::CloudApiProvider(const CloudApiConfig& config, SecretBox secrets)
    : config_(config), secrets_(std::move(secrets)), client_(AsyncHttpClient::Options{}) {}

namespace {
std::string wamid_of(const json& j) {
  if (auto m = j.find("messages"); m != j.end() && m->is_array() && !m->empty() && (*m)[0].is_object() &&
                                   (*m)[0].contains("id") && (*m)[0]["id"].is_string())
    return (*m)[0]["id"];
  return {};
}
}  // namespace

SendResult CloudApiProvider::interpret(const HttpResponse& resp, const std::string& where) {
  if (!resp.transport_ok() || (resp.status >= 200 && resp.status <= 299)) return interpret_send(resp, where, wamid_of);
  long code = 0;
  std::string message;
  try {
    const auto j = json::parse(resp.body);
    const auto& e = j.at("error");
    code = e.at("code").get<long>();
    message = e.value("message", "");
  } catch (const std::exception&) {
    return interpret_send(resp, where, wamid_of);  // not a Graph error body: judge by HTTP status
  }
  const std::string what = where + "HTTP " + std::to_string(resp.status) + ", Graph error " + std::to_string(code) + ": " +
                           excerpt(message);
  SendResult r;
  switch (code) {
    case 130429:  // throughput exceeded: nothing sent, back off
      r = result(SendResult::Status::RetryableError, what);
      r.retry_after_ms = 1000;
      r.throttled = true;
      return r;
    case 131056:  // pair rate limit: this recipient, later
      r = result(SendResult::Status::RetryableError, what);
      r.retry_after_ms = 6000;
      return r;
    case 131048:
    case 368:
      r = result(SendResult::Status::Rejected, what);
      r.pause_reason = code == 368 ? "policy_block" : "spam_rate_limit";
      return r;
    default:
      break;
  }
  if (resp.status >= 500 || code == 1 || code == 2) {  // Graph's own "unknown"/"service" errors
    r = result(SendResult::Status::RetryableError, what);
    r.maybe_delivered = resp.status != 503;
    return r;
  }
  return result(SendResult::Status::Rejected, what);
}

void CloudApiProvider::send(const SendRequest& request, SendDone done) {
  const std::string where = "cloud_api " + request.route.phone_number_id + ": ";
  std::string token;
  try {
    token = open_session_secrets(secrets_, request.tenant_id, request.session, request.route.secrets).value("access_token", "");
  } catch (const std::exception& e) {
    return done(result(SendResult::Status::Rejected, where + "cannot open the session's credentials: " + e.what()));
  }
  if (token.empty()) return done(result(SendResult::Status::Rejected, where + "the session has no stored access_token"));
  HttpRequest req;
  req.url = config_.graph_url + "/" + config_.version + "/" + request.route.phone_number_id + "/messages";
  req.timeout_ms = config_.timeout_ms;
  req.connect_timeout_ms = std::min(config_.timeout_ms, 2000);
  req.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}};
  const std::string to = request.to.rfind('+', 0) == 0 ? request.to.substr(1) : request.to;
  try {
    req.body = json{{"messaging_product", "whatsapp"}, {"recipient_type", "individual"}, {"to", to}, {"type", "text"},
                    {"text", {{"body", request.text}}}}
                   .dump();
  } catch (const json::exception& e) {
    return done(result(SendResult::Status::Rejected, where + "request cannot be encoded as JSON: " + e.what()));
  }
  client_.submit(std::move(req), [where, done = std::move(done)](HttpResponse resp) { done(interpret(resp, where)); });
}

}  // namespace sb
