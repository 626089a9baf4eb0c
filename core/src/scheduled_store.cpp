#include "switchboard/core/scheduled_store.hpp"

namespace sb {

InsertOutcome ScheduledStore::schedule(const NewMessage& m, const std::string& send_at) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec_params(R"SQL(
      WITH ins AS (
        INSERT INTO messages (id, tenant_id, session, recipient, body, priority, status, idempotency_key, send_at,
                              release_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $8::timestamptz, $8::timestamptz)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING id, send_at
      ), hist AS (
        INSERT INTO message_status_history (message_id, status, at, detail)
        SELECT id, 'scheduled', now(), 'send_at ' || to_char(send_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM ins
      )
      SELECT id::text FROM ins)SQL",
                            m.id, m.tenant_id, m.session, m.to, m.text, m.priority, m.idempotency_key, send_at);
    InsertOutcome out;
    if (!r.empty()) {
      out = {m.id, true, "scheduled", m.priority};
    } else {
      auto e = tx.exec_params("SELECT id::text, status, priority FROM messages WHERE tenant_id = $1 AND idempotency_key = $2",
                              m.tenant_id, m.idempotency_key);
      if (e.empty()) throw Error(ErrorKind::Internal, "message " + m.id + " was neither inserted nor found");
      out = {e[0][0].as<std::string>(), false, e[0][1].as<std::string>(), e[0][2].as<std::string>()};
    }
    tx.commit();
    return out;
  });
}

ScheduledStore::CancelResult ScheduledStore::cancel(const std::string& tenant_id, const std::string& id, int lock_wait_ms) {
  CancelResult out;
  if (!MessageStore::valid_id(id)) return out;
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("SET LOCAL lock_timeout = " + std::to_string(lock_wait_ms));
    pqxx::result r;
    try {
      r = tx.exec_params(R"SQL(
        WITH up AS (
          UPDATE messages SET status = 'cancelled', release_at = NULL, updated_at = now()
          WHERE id = $1 AND tenant_id = $2 AND status = 'scheduled'
          RETURNING id
        ), hist AS (
          INSERT INTO message_status_history (message_id, status, at) SELECT id, 'cancelled', now() FROM up
        )
        SELECT count(*) FROM up)SQL", id, tenant_id);
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() == "55P03") throw Unavailable("message " + id + " is being released by a scheduler right now; retry");
      throw;
    }
    if (r[0][0].as<long long>() > 0) {
      out.kind = CancelResult::Kind::Cancelled;
    } else {
      auto s = tx.exec_params("SELECT status FROM messages WHERE id = $1 AND tenant_id = $2", id, tenant_id);
      if (!s.empty()) out = {CancelResult::Kind::TooLate, s[0][0].as<std::string>()};
    }
    tx.commit();
  });
  return out;
}

std::size_t ScheduledStore::release_due(int limit, int tx_idle_ms, const Publish& publish) {
  return pool_.run([&](pqxx::connection& c) -> std::size_t {
    {
      // Most polls find nothing due: one indexed read then, instead of BEGIN, SET LOCAL, the
      // locking SELECT and ROLLBACK (5 polls a second per scheduler, busy or idle).
      pqxx::nontransaction peek(c);
      if (!pg::exec_prepared(peek, "SELECT EXISTS (SELECT 1 FROM messages WHERE release_at <= now() AND status = 'scheduled')")[0][0]
               .as<bool>())
        return 0;
    }
    pqxx::work tx(c);
    // A scheduler that stalls while holding the rows (SIGSTOP, a hung broker call) loses its
    // session and its locks after this long; the rows are then anyone's again.
    tx.exec("SET LOCAL idle_in_transaction_session_timeout = " + std::to_string(tx_idle_ms));
    auto rows = tx.exec_params(R"SQL(
      SELECT id::text, tenant_id::text, session, priority,
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), recipient, body
      FROM messages WHERE release_at <= now() AND status = 'scheduled'
      ORDER BY release_at LIMIT $1 FOR UPDATE SKIP LOCKED)SQL", limit);
    if (rows.empty()) return 0;
    std::vector<SendCommand> commands;
    commands.reserve(rows.size());
    for (const auto& r : rows)
      commands.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
                          r[4].as<std::string>(), r[5].as<std::string>(), r[6].as<std::string>()});
    const auto acked = publish(commands);
    if (!acked.empty()) {
      tx.exec_params(R"SQL(
        WITH up AS (
          UPDATE messages SET status = 'queued', release_at = NULL, updated_at = now()
          WHERE id = ANY($1::uuid[]) AND status = 'scheduled' RETURNING id
        )
        INSERT INTO message_status_history (message_id, status, at) SELECT id, 'queued', now() FROM up)SQL",
                     pg::array_literal(acked));
    }
    tx.commit();
    return commands.size();
  });
}

ScheduledStore::Backlog ScheduledStore::backlog() {
  return pool_.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec(R"SQL(
      SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(release_at) FILTER (WHERE release_at <= now())), 0)::float8
      FROM messages WHERE release_at IS NOT NULL AND status = 'scheduled')SQL");
    return Backlog{r[0][0].as<long long>(), r[0][1].as<double>()};
  });
}

}  // namespace sb
