#pragma once
// The small error vocabulary shared by every room. Each error says whether retrying can help,
// so callers (intake → 503 vs 4xx, workers → retry vs DLQ) decide without string matching.
#include <stdexcept>
#include <string>

namespace sb {

enum class ErrorKind {
  Config,       // bad configuration: fix the file or env and restart
  Invalid,      // bad input from a client or a record: never retry as-is
  NotFound,     // the named thing does not exist (for this tenant)
  Conflict,     // already exists
  Unavailable,  // a dependency (Kafka, Postgres, Redis, provider) is down or slow: retry later
  Internal,     // a bug or an unexpected state
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  bool retryable() const { return kind_ == ErrorKind::Unavailable; }

 private:
  ErrorKind kind_;
};

struct ConfigError : Error {
  explicit ConfigError(const std::string& m) : Error(ErrorKind::Config, m) {}
};
struct InvalidInput : Error {
  // field: the JSON path of the offending value ("" when the whole input is at fault).
  InvalidInput(const std::string& m, std::string field = {})
      : Error(ErrorKind::Invalid, m), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};
struct NotFound : Error {
  explicit NotFound(const std::string& m) : Error(ErrorKind::NotFound, m) {}
};
struct Conflict : Error {
  explicit Conflict(const std::string& m) : Error(ErrorKind::Conflict, m) {}
};
struct Unavailable : Error {
  explicit Unavailable(const std::string& m) : Error(ErrorKind::Unavailable, m) {}
};

}  // namespace sb
