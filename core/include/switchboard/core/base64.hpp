#pragma once
// Standard base64 (RFC 4648 section 4, '=' padded) over OpenSSL's EVP_EncodeBlock/DecodeBlock.
#include <string>
#include <string_view>

namespace sb {

std::string base64_encode(std::string_view bytes);
// Strict: the standard alphabet only, padding optional but right if present. False on
// malformed input, with `why` saying what is wrong (for error messages).
bool base64_decode(std::string_view input, std::string& out, std::string& why);

}  // namespace sb
