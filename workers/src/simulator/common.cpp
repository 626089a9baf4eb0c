#include "common.hpp"

#include <random>

namespace sb::sim {

http::Response reply(int status, const json& body) {
  http::Response res;
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  return res;
}

std::optional<json> parse_object(const std::string& body, std::string* error) {
  json parsed;
  try {
    parsed = json::parse(body);
  } catch (const json::exception& e) {
    *error = std::string("body is not valid JSON: ") + e.what();
    return std::nullopt;
  }
  if (!parsed.is_object()) {
    *error = "body must be a JSON object";
    return std::nullopt;
  }
  return parsed;
}

std::optional<std::string> string_field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t now_s() { return now_ms() / 1000; }

namespace {
std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}
}  // namespace

uint64_t random_below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng()); }

std::string random_hex(std::size_t chars, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < chars; ++i) out += digits[random_below(16)];
  return out;
}

std::string random_digits(std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += static_cast<char>('0' + random_below(10));
  return out;
}

std::string random_alnum(std::size_t n) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += alphabet[random_below(sizeof alphabet - 1)];
  return out;
}

std::string ulid_like() {
  static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  std::string out(26, '0');
  uint64_t t = static_cast<uint64_t>(now_ms());
  for (int i = 9; i >= 0; --i) {
    out[i] = crockford[t & 31];
    t >>= 5;
  }
  for (int i = 10; i < 26; ++i) out[i] = crockford[random_below(32)];
  return out;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string percent_encode(const std::string& s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int send_latency_ms(const SimulatorConfig& config) {
  int delay = std::max(0, config.latency_ms);
  if (config.latency_jitter_ms > 0) delay += static_cast<int>(random_below(static_cast<uint64_t>(config.latency_jitter_ms) + 1));
  return delay;
}

bool simulated_failure(const SimulatorConfig& config) {
  return config.failure_rate > 0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng()) < config.failure_rate;
}

}  // namespace sb::sim
