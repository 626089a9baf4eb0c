#include "switchboard/core/ids.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace sb {
namespace {
std::string format_uuid(const unsigned char* b) {
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}
void random_bytes(unsigned char* dst, int n) {
  if (RAND_bytes(dst, n) != 1) throw std::runtime_error("OpenSSL RAND_bytes failed: no entropy available");
}
}  // namespace

std::string new_uuid_v7() {
  std::array<unsigned char, 16> b{};
  random_bytes(b.data(), 16);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>((ms >> (8 * (5 - i))) & 0xff);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  return format_uuid(b.data());
}

std::string uuid_from_name(std::string_view name) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(name.data()), name.size(), digest);
  digest[6] = (digest[6] & 0x0f) | 0x80;
  digest[8] = (digest[8] & 0x3f) | 0x80;
  return format_uuid(digest);
}

std::string new_secret(std::string_view prefix) {
  unsigned char raw[32];
  random_bytes(raw, sizeof raw);
  unsigned char b64[64];
  const int n = EVP_EncodeBlock(b64, raw, sizeof raw);
  std::string out(prefix);
  for (int i = 0; i < n; ++i) {
    char c = static_cast<char>(b64[i]);
    if (c == '=') continue;
    out += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

bool rfc3339_in_range(const std::string& t) {
  auto num = [&](std::size_t pos, std::size_t len) { return std::stoi(t.substr(pos, len)); };
  const int year = num(0, 4), month = num(5, 2), day = num(8, 2);
  const int hour = num(11, 2), minute = num(14, 2), second = num(17, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > kDays[month - 1] + (month == 2 && leap ? 1 : 0)) return false;
  const auto sign = t.find_first_of("+-", 19);
  if (sign != std::string::npos && (num(sign + 1, 2) > 15 || num(sign + 4, 2) > 59)) return false;
  return true;
}

std::string to_rfc3339(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

long long rfc3339_unix_ms(const std::string& t) {
  auto num = [&](std::size_t pos, std::size_t len) { return std::stoll(t.substr(pos, len)); };
  // Days from civil (Howard Hinnant's algorithm): no timegm, no locale, no TZ environment.
  long long y = num(0, 4);
  const long long m = num(5, 2), d = num(8, 2);
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const long long yoe = y - era * 400;
  const long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const long long days = era * 146097 + doe - 719468;
  long long ms = ((days * 24 + num(11, 2)) * 60 + num(14, 2)) * 60000 + num(17, 2) * 1000;
  std::size_t pos = 19;
  if (pos < t.size() && t[pos] == '.') {
    long long frac = 0;
    int digits = 0;
    for (++pos; pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos])); ++pos)
      if (digits < 3) frac = frac * 10 + (t[pos] - '0'), ++digits;
    while (digits < 3) frac *= 10, ++digits;
    ms += frac;
  }
  if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    const long long offset = (num(pos + 1, 2) * 60 + num(pos + 4, 2)) * 60000;
    ms += t[pos] == '+' ? -offset : offset;  // 10:00+02:00 is 08:00Z
  }
  return ms;
}

}  // namespace sb
