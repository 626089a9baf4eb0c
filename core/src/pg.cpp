#include "switchboard/core/pg.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "switchboard/core/log.hpp"
#include "switchboard/core/metrics.hpp"

namespace sb::pg {
namespace fs = std::filesystem;

namespace {
// sb_postgres_errors_total{kind}: connect (no connection could be made), connection_lost (one
// broke mid-call), pool_exhausted (no free connection in time), statement (the server refused
// a statement: SQLSTATE other than a unique violation, timeouts included), conflict (a unique
// violation: often the expected answer of an idempotent insert, so kept apart).
prometheus::Counter& pg_error_counter(const char* kind) {
  static const metrics::CounterSet errors(
      "sb_postgres_errors_total", "PostgreSQL failures by kind: connect, connection_lost, pool_exhausted, statement, conflict.",
      "kind", {"connect", "connection_lost", "pool_exhausted", "statement", "conflict"});
  return errors[kind];
}
}  // namespace

Pool::Pool(const PostgresConfig& config) : config_(config) { pg_error_counter("connect"); }

std::unique_ptr<pqxx::connection> Pool::connect() {
  try {
    auto c = std::make_unique<pqxx::connection>(config_.url);
    pqxx::nontransaction tx(*c);
    tx.exec("SET statement_timeout = " + std::to_string(config_.statement_timeout_ms));
    return c;
  } catch (const pqxx::broken_connection& e) {
    pg_error_counter("connect").Increment();
    throw Unavailable(std::string("cannot connect to PostgreSQL (postgres.url): ") + e.what());
  }
}

std::unique_ptr<pqxx::connection> Pool::acquire(int wait_ms) {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (idle_.empty() && open_ >= config_.pool_size) {
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= config_.pool_size) {
      pg_error_counter("pool_exhausted").Increment();
      throw Unavailable("no free PostgreSQL connection within " + std::to_string(wait_ms) +
                        " ms (postgres.pool_size = " + std::to_string(config_.pool_size) + ")");
    }
  }
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  ++open_;
  lock.unlock();
  try {
    return connect();
  } catch (...) {
    std::lock_guard relock(mu_);
    --open_;
    cv_.notify_one();
    throw;
  }
}

void Pool::release(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard lock(mu_);
  if (conn) idle_.push_back(std::move(conn));
  else --open_;
  cv_.notify_one();
}

void Pool::rethrow_mapped() {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    pg_error_counter("connection_lost").Increment();
    throw Unavailable(std::string("PostgreSQL connection lost: ") + e.what());
  } catch (const pqxx::unique_violation& e) {
    pg_error_counter("conflict").Increment();
    throw Conflict(std::string("already exists: ") + e.what());
  } catch (const pqxx::sql_error& e) {
    pg_error_counter("statement").Increment();
    const std::string state = e.sqlstate();
    // 08 connection, 40 serialization/deadlock, 53 resources, 57 admin shutdown / timeout.
    if (state.rfind("08", 0) == 0 || state.rfind("40", 0) == 0 || state.rfind("53", 0) == 0 ||
        state.rfind("57", 0) == 0)
      throw Unavailable("PostgreSQL temporarily failed (" + state + "): " + e.what());
    throw Error(ErrorKind::Internal, "PostgreSQL error (" + state + ") in `" + e.query() + "`: " + e.what());
  }
}

bool Pool::reachable() {
  try {
    run([](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      tx.exec("SELECT 1");
    }, 1000);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

namespace {
std::string quote_element(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::string statement_name(const std::string& sql) {
  // FNV-1a: stable across processes and builds, unlike std::hash (a name seen in
  // pg_prepared_statements or a server log means the same text everywhere).
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : sql) h = (h ^ ch) * 1099511628211ULL;
  char buf[24];
  std::snprintf(buf, sizeof buf, "sb_%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + quote_element(items[i]);
  return out + "}";
}

std::string array_literal_nullable(const std::vector<std::optional<std::string>>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i)
    out += (i ? "," : "") + (items[i] ? quote_element(*items[i]) : std::string("NULL"));
  return out + "}";
}

std::vector<std::string> migrate(Pool& pool, const std::string& sql_dir) {
  if (!fs::is_directory(sql_dir)) throw ConfigError("migrations directory '" + sql_dir + "' not found");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(sql_dir))
    if (e.path().extension() == ".sql") files.push_back(e.path());
  std::sort(files.begin(), files.end());

  return pool.run([&](pqxx::connection& c) {
    std::vector<std::string> applied;
    for (const auto& file : files) {
      const auto name = file.stem().string();
      const auto sep = name.find('_');
      int version = 0;
      try {
        version = std::stoi(name.substr(0, sep));
      } catch (...) {
        throw ConfigError("migration file '" + file.string() + "' must be named NNN_description.sql");
      }
      std::ifstream in(file);
      std::stringstream sql;
      sql << in.rdbuf();
      pqxx::work tx(c);
      tx.exec("SELECT pg_advisory_xact_lock(7411)");  // one migrator at a time
      tx.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
              "applied_at timestamptz NOT NULL DEFAULT now())");
      if (!tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", version).empty()) {
        tx.commit();
        continue;
      }
      tx.exec(sql.str());
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name);
      tx.commit();
      log::info("migration.applied", {{"version", std::to_string(version)}, {"name", name}});
      applied.push_back(name);
    }
    return applied;
  }, 30000);
}

}  // namespace sb::pg
