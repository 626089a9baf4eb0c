#pragma once
// PostgreSQL: a small bounded connection pool over libpqxx (which owns each PGconn), error
// mapping to our vocabulary, and the versioned migrations runner.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"

namespace sb::pg {

class Pool {
 public:
  explicit Pool(const PostgresConfig& config);

  // Runs f(connection) on a pooled connection. A broken connection is dropped (the next call
  // reconnects) and reported as Unavailable; unique violations become Conflict.
  // Blocks up to wait_ms for a free connection, then throws Unavailable.
  template <typename F>
  auto run(F&& f, int wait_ms = 5000) -> decltype(f(std::declval<pqxx::connection&>())) {
    auto conn = acquire(wait_ms);
    try {
      if constexpr (std::is_void_v<decltype(f(*conn))>) {
        f(*conn);
        release(std::move(conn));
      } else {
        auto result = f(*conn);
        release(std::move(conn));
        return result;
      }
    } catch (...) {
      bool usable = conn && conn->is_open();
      if (usable) release(std::move(conn)); else release(nullptr);
      rethrow_mapped();
    }
  }
  // Connects once to prove the server is reachable (readiness probes).
  bool reachable();

 private:
  std::unique_ptr<pqxx::connection> acquire(int wait_ms);
  void release(std::unique_ptr<pqxx::connection> conn);
  [[noreturn]] static void rethrow_mapped();
  std::unique_ptr<pqxx::connection> connect();

  PostgresConfig config_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 0;  // connections handed out or idle
};

// Quotes a text[] / uuid[] literal for unnest()-based batch statements.
std::string array_literal(const std::vector<std::string>& items);
std::string array_literal_nullable(const std::vector<std::optional<std::string>>& items);

// Applies schemas/sql/NNN_name.sql files not yet recorded in schema_migrations, each in its own
// transaction, under an advisory lock so concurrent migrators don't race. Returns what it applied.
std::vector<std::string> migrate(Pool& pool, const std::string& sql_dir);

}  // namespace sb::pg
