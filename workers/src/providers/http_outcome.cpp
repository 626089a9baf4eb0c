#include "switchboard/workers/providers/http_outcome.hpp"

#include <algorithm>

namespace sb {

using json = nlohmann::json;

namespace {

constexpr size_t kExcerptBytes = 200;

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
}  // namespace

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

SendResult result(SendResult::Status status, std::string error, std::string provider_id) {
  SendResult r;
  r.status = status;
  r.error = std::move(error);
  r.provider_message_id = std::move(provider_id);
  return r;
}

SendResult interpret_send(const HttpResponse& resp, const std::string& where, const IdOf& id_of, const std::string& id_field) {
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
      if (j.is_object())
        if (auto id = id_of(j); !id.empty()) return result(SendResult::Status::Sent, {}, id);
      problem = "no " + id_field + " in the response";
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
    r.throttled = resp.status == 429;
    return r;
  }
  // Other 4xx (and 1xx/3xx: redirects are not followed) mean the request itself is wrong.
  return result(SendResult::Status::Rejected, where + http + ": " + excerpt(resp.body));
}


}  // namespace sb
