#pragma once
// sb::http::RouteTable — how sb::http::Server finds a request's route without running a regex
// (implemented in http_server.cpp).
//
// Routes are registered as ECMAScript regexes matched against the whole path, in registration
// order (the first that matches wins; no route of the request's method: 404). Most of ours are
// plain segment shapes: literal segments, `([^/]+)` (any non-empty segment, captured) and
// `(a|b|c)` (one of a few literals, captured). Those compile to a segment matcher: the path is
// split at '/' once per request and compared segment by segment, the same answer the regex gives
// at a fraction of the cost (a libstdc++ regex_match is thousands of instructions per route
// tried). Any other pattern (".*", `v[0-9]+\.[0-9]+`) keeps its std::regex, so every pattern
// still means what it says; order is kept across both kinds.
#include <cstddef>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace sb::http {

// One registered pattern.
class RoutePattern {
 public:
  explicit RoutePattern(const std::string& pattern);  // throws std::regex_error like std::regex
  // Whole-path match; on success `groups` holds [0] the path, [1..] the pattern's groups (as
  // std::smatch would have them).
  bool match(std::string_view path, const std::vector<std::string_view>& segments, std::vector<std::string>& groups) const;
  // True when it compiled to the segment matcher (no regex runs for it).
  bool segmented() const { return !regex_; }
  // The template: each top-level group written {}, escapes undone ("/v1/sessions/{}/messages").
  const std::string& label() const { return label_; }

 private:
  struct Segment {
    enum class Kind { Literal, Any, OneOf } kind = Kind::Literal;
    std::string literal;                  // Literal
    std::vector<std::string> choices;     // OneOf
  };
  std::vector<Segment> segments_;
  std::size_t captures_ = 0;
  std::optional<std::regex> regex_;  // set when the pattern is no plain segment shape
  std::string prefix_;               // literal start of a regex pattern: most paths fail here
  std::string label_;
};

// The routes of one server, in registration order.
class RouteTable {
 public:
  // Returns the new route's index (0, 1, …), which find() answers with.
  std::size_t add(const std::string& method, const std::string& pattern);
  // The first route of `method` whose pattern matches the whole `path`, with its groups filled
  // (see RoutePattern::match); nullopt when none does.
  std::optional<std::size_t> find(std::string_view method, std::string_view path, std::vector<std::string>& groups) const;
  const RoutePattern& pattern(std::size_t index) const { return routes_[index].pattern; }
  const std::string& method(std::size_t index) const { return routes_[index].method; }
  std::size_t size() const { return routes_.size(); }

  // "/a/b/c" → {"a", "b", "c"}; "/" → {""}; "" or no leading '/' → {} (no segment route matches).
  static std::vector<std::string_view> split_path(std::string_view path);

 private:
  struct Entry {
    std::string method;
    RoutePattern pattern;
  };
  struct MethodRoutes {
    std::string method;
    std::vector<std::size_t> indexes;  // into routes_, registration order
  };
  std::vector<Entry> routes_;
  std::vector<MethodRoutes> by_method_;
};

}  // namespace sb::http
