// pg::exec_prepared against a real PostgreSQL: a batch statement is parsed and planned once per
// connection (the server's pg_prepared_statements shows one entry however often it runs), and a
// connection the server killed is replaced by one that prepares it again.
#include <catch2/catch.hpp>

#include <string>

#include "stack.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/pg.hpp"

namespace {
const std::string kDoubledSql = "SELECT x * 2 FROM unnest($1::int[]) AS t(x) ORDER BY x";

int prepared_count(pqxx::connection& c, const std::string& name) {
  pqxx::nontransaction tx(c);
  return tx.exec_params("SELECT count(*) FROM pg_prepared_statements WHERE name = $1", name)[0][0].as<int>();
}
}  // namespace

TEST_CASE("postgres: a statement run through exec_prepared is prepared once per connection, and again after a reconnect",
          "[integration][postgres]") {
  sbtest::TestStack stack("pg-prepared", 1);
  sb::PostgresConfig one = stack.config.postgres;
  one.pool_size = 1;  // every run below gets the same connection while it lives
  sb::pg::Pool pool(one);
  const std::string name = sb::pg::statement_name(kDoubledSql);
  CHECK(name == sb::pg::statement_name(std::string(kDoubledSql)));  // stable: derived from the text
  CHECK(name != sb::pg::statement_name(kDoubledSql + " "));

  auto doubled = [&](const std::string& array) {
    return pool.run([&](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      std::vector<int> out;
      for (const auto& r : sb::pg::exec_prepared(tx, kDoubledSql, array)) out.push_back(r[0].as<int>());
      return out;
    });
  };
  int backend = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(doubled("{3,1,2}") == std::vector<int>{2, 4, 6});
    pool.run([&](pqxx::connection& c) {
      CHECK(prepared_count(c, name) == 1);
      const int pid = c.backendpid();
      if (backend) CHECK(pid == backend);  // the same connection: nothing was prepared twice
      backend = pid;
    });
  }
  // Inside a transaction that commits, too (the intake's keyed insert runs in one).
  pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    CHECK(sb::pg::exec_prepared(tx, kDoubledSql, "{5}")[0][0].as<int>() == 10);
    tx.commit();
  });

  // The server ends the connection: the next run reports it, the one after reconnects and
  // prepares the statement on the new connection.
  {
    pqxx::connection admin(stack.config.postgres.url);
    pqxx::nontransaction tx(admin);
    REQUIRE(tx.exec_params("SELECT pg_terminate_backend($1)", backend)[0][0].as<bool>());
  }
  CHECK_THROWS_AS(doubled("{1}"), sb::Unavailable);
  CHECK(doubled("{7,4}") == std::vector<int>{8, 14});
  pool.run([&](pqxx::connection& c) {
    CHECK(c.backendpid() != backend);
    CHECK(prepared_count(c, name) == 1);
  });
}
