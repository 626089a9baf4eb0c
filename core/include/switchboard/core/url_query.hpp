#pragma once
// Request-target decoding, shared by the HTTP server and the fuzz target of the routes that read
// a query (the Cloud API's GET handshake): %XX decoding, and key=value&… query strings.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb::http {

// %XX decoded (a malformed escape is kept as written); '+' → ' ' when plus_is_space (queries).
std::string url_decode(std::string_view s, bool plus_is_space);
// "a=1&b=x%20y&c" → {a,1}, {b,"x y"}, {c,""}, appended to out in order (repeats kept).
void parse_query(std::string_view q, std::vector<std::pair<std::string, std::string>>& out);

}  // namespace sb::http
