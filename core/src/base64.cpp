#include "switchboard/core/base64.hpp"

#include <openssl/evp.h>

namespace sb {

namespace {
bool is_b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');  // +1: EVP_EncodeBlock NUL-terminates
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Strict standard base64: only the standard alphabet, at most two '=' and only at the end.
// Missing padding is tolerated (the official libraries accept unpadded secrets, and it is
// unambiguous); wrong padding is not. EVP_DecodeBlock alone is too lenient (it skips surrounding
// whitespace) and reports the padded length (3 bytes per 4 chars), so we validate first and
// trim after. Returns false on malformed input, with `why` saying what is wrong.
bool base64_decode(std::string_view input, std::string& out, std::string& why) {
  if (input.empty()) {
    why = "is empty";
    return false;
  }
  std::size_t pad = 0;
  while (pad < 2 && pad < input.size() && input[input.size() - 1 - pad] == '=') ++pad;
  const std::size_t data_len = input.size() - pad;
  for (std::size_t i = 0; i < data_len; ++i) {
    const char c = input[i];
    if (!is_b64_char(c)) {
      if (c == '-' || c == '_') {
        why = "uses the base64url alphabet ('-' or '_'); standard base64 ('+', '/') is required";
      } else if (c == '=') {
        why = "has '=' padding in the middle";
      } else {
        why = "contains a character outside the base64 alphabet at offset " + std::to_string(i);
      }
      return false;
    }
  }
  // Characters past the last full group: 0, 2 (needs "==") or 3 (needs "="); 1 is impossible.
  const std::size_t rem = data_len % 4;
  const std::size_t needed = (4 - rem) % 4;
  if (rem == 1 || (pad != 0 && pad != needed)) {
    why = "has " + std::to_string(data_len) + " characters and " + std::to_string(pad) +
          " '=' of padding, which no base64 encoding has";
    return false;
  }
  std::string text(input.substr(0, data_len));
  text.append(needed, '=');
  out.assign(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) {
    why = "could not be decoded";
    return false;
  }
  out.resize(out.size() - needed);  // EVP_DecodeBlock counts the padding as zero bytes
  return true;
}


}  // namespace sb
