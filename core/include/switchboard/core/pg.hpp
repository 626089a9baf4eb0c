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

// "sb_" + the hex of a 64-bit hash of the statement's text (see exec_prepared).
std::string statement_name(const std::string& sql);

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

// Runs a statement whose text is constant as a prepared statement of this connection: the
// server parses and plans it once per connection instead of once per batch (planning a
// batch statement's CTEs cost more than executing it). The name is derived from the text, so
// call sites need no registry; never use it for text that varies with the input (each
// variant would stay prepared on the connection). libpqxx re-prepares after a reconnect.
// A PgBouncer in transaction mode before 1.21 does not keep prepared statements.
template <typename... Args>
pqxx::result exec_prepared(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  const std::string name = statement_name(sql);
  tx.conn().prepare(name, sql);  // a no-op once declared with this text on this connection
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// Quotes a text[] / uuid[] literal for unnest()-based batch statements.
std::string array_literal(const std::vector<std::string>& items);
std::string array_literal_nullable(const std::vector<std::optional<std::string>>& items);

// Applies schemas/sql/NNN_name.sql files not yet recorded in schema_migrations, each in its own
// transaction, under an advisory lock so concurrent migrators don't race. Returns what it applied.
std::vector<std::string> migrate(Pool& pool, const std::string& sql_dir);

}  // namespace sb::pg
