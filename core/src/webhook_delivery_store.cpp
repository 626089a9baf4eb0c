#include "switchboard/core/webhook_delivery_store.hpp"

#include <algorithm>

namespace sb {

namespace {

// PostgreSQL text cannot hold NUL: a receiver answering with one must not make the attempt
// log refuse the whole batch.
std::optional<std::string> storable(const std::optional<std::string>& s, std::size_t max = std::string::npos) {
  if (!s) return s;
  std::string out = s->substr(0, max);
  out.erase(std::remove(out.begin(), out.end(), '\0'), out.end());
  return out;
}

std::size_t insert_scheduled(pqxx::transaction_base& tx, const std::vector<ScheduledDelivery>& ds) {
  if (ds.empty()) return 0;
  std::vector<std::string> endpoints, tenants, events, types, bodies, attempts, delays, ordered;
  std::vector<std::optional<std::string>> sessions;
  for (const auto& d : ds) {
    endpoints.push_back(d.endpoint_id);
    tenants.push_back(d.tenant_id);
    events.push_back(d.event_id);
    types.push_back(d.event_type);
    sessions.push_back(d.session);
    bodies.push_back(d.body);
    attempts.push_back(std::to_string(d.attempts));
    delays.push_back(std::to_string(d.due_in_s));
    ordered.push_back(d.ordered ? "t" : "f");
  }
  // WITH ORDINALITY + ORDER BY: row ids follow the input order, which per_session ordering uses.
  auto r = pg::exec_prepared(tx, R"SQL(
    INSERT INTO webhook_deliveries (endpoint_id, tenant_id, event_id, event_type, session, body, attempts, due_at, ordered)
    SELECT e, t, ev, ty, s, b, a, now() + make_interval(secs => d), o
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::bool[])
      WITH ORDINALITY AS x(e, t, ev, ty, s, b, a, d, o, n)
    ORDER BY n
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
  )SQL",
                 pg::array_literal(endpoints), pg::array_literal(tenants), pg::array_literal(events),
                 pg::array_literal(types), pg::array_literal_nullable(sessions), pg::array_literal(bodies),
                 pg::array_literal(attempts), pg::array_literal(delays), pg::array_literal(ordered));
  return static_cast<std::size_t>(r.affected_rows());
}

struct AttemptRows {
  std::string endpoints, tenants, events, types, numbers, outcomes, statuses, errors, latencies, excerpts;
};

AttemptRows attempt_rows(const std::vector<AttemptRecord>& as) {
  std::vector<std::string> endpoints, tenants, events, types, numbers, outcomes, latencies;
  std::vector<std::optional<std::string>> statuses, errors, excerpts;
  for (const auto& a : as) {
    endpoints.push_back(a.endpoint_id);
    tenants.push_back(a.tenant_id);
    events.push_back(a.event_id);
    types.push_back(a.event_type);
    numbers.push_back(std::to_string(a.attempt));
    outcomes.push_back(a.outcome);
    latencies.push_back(std::to_string(a.latency_ms));
    statuses.push_back(a.http_status ? std::optional<std::string>(std::to_string(*a.http_status)) : std::nullopt);
    errors.push_back(storable(a.error));
    excerpts.push_back(storable(a.response_excerpt, 2048));
  }
  return {pg::array_literal(endpoints), pg::array_literal(tenants),          pg::array_literal(events),
          pg::array_literal(types),     pg::array_literal(numbers),          pg::array_literal(outcomes),
          pg::array_literal_nullable(statuses), pg::array_literal_nullable(errors), pg::array_literal(latencies),
          pg::array_literal_nullable(excerpts)};
}

constexpr const char* kInsertAttempts = R"SQL(
    INSERT INTO webhook_attempts (endpoint_id, tenant_id, event_id, event_type, attempt, outcome, http_status, error,
                                  latency_ms, response_excerpt)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[], $7::int[], $8::text[],
                         $9::int[], $10::text[]))SQL";

void insert_attempts(pqxx::transaction_base& tx, const std::vector<AttemptRecord>& as) {
  if (as.empty()) return;
  const auto r = attempt_rows(as);
  pg::exec_prepared(tx, kInsertAttempts, r.endpoints, r.tenants, r.events, r.types, r.numbers, r.outcomes, r.statuses,
                    r.errors, r.latencies, r.excerpts);
}

// A batch of first-try deliveries (the common case at load) writes its attempts and its events:
// one statement with both inserts, instead of BEGIN, two inserts and COMMIT.
void insert_attempts_and_events(pqxx::transaction_base& tx, const std::vector<AttemptRecord>& as,
                                const std::vector<StoredEvent>& events) {
  static const std::string sql = std::string("WITH attempts AS (") + kInsertAttempts + "\n), events AS (\n    " +
                                 EventStore::insert_sql(11) + "\n) SELECT 1";
  const auto a = attempt_rows(as);
  const auto e = EventStore::insert_rows(events);
  pg::exec_prepared(tx, sql, a.endpoints, a.tenants, a.events, a.types, a.numbers, a.outcomes, a.statuses, a.errors,
                    a.latencies, a.excerpts, e.ids, e.tenants, e.types, e.sessions, e.occurred, e.bodies);
}

}  // namespace

std::size_t WebhookDeliveryStore::schedule(const std::vector<ScheduledDelivery>& ds) {
  if (ds.empty()) return 0;
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement
    return insert_scheduled(tx, ds);
  });
}

void WebhookDeliveryStore::apply(const DeliveryChanges& ch) {
  if (ch.empty()) return;
  auto statements = [&](pqxx::transaction_base& tx) {
    insert_attempts(tx, ch.attempts);
    EventStore::insert(tx, ch.events);
    if (!ch.complete.empty()) {
      std::vector<std::string> ids;
      for (auto id : ch.complete) ids.push_back(std::to_string(id));
      pg::exec_prepared(tx, "DELETE FROM webhook_deliveries WHERE id = ANY($1::bigint[])", pg::array_literal(ids));
    }
    if (!ch.reschedule.empty()) {
      std::vector<std::string> ids, attempts, delays;
      for (const auto& r : ch.reschedule) {
        ids.push_back(std::to_string(r.id));
        attempts.push_back(std::to_string(r.attempts));
        delays.push_back(std::to_string(r.due_in_s));
      }
      pg::exec_prepared(tx, R"SQL(
        UPDATE webhook_deliveries d SET attempts = x.a, due_at = now() + make_interval(secs => x.s), claimed_until = NULL
        FROM unnest($1::bigint[], $2::int[], $3::int[]) AS x(i, a, s) WHERE d.id = x.i
      )SQL", pg::array_literal(ids), pg::array_literal(attempts), pg::array_literal(delays));
    }
    insert_scheduled(tx, ch.schedule);
  };
  pool_.run([&](pqxx::connection& c) {
    if (ch.statements() == 1) {  // atomic on its own: skip the BEGIN/COMMIT round trips
      pqxx::nontransaction tx(c);
      statements(tx);
      return;
    }
    if (ch.statements() == 2 && !ch.attempts.empty() && !ch.events.empty()) {
      pqxx::nontransaction tx(c);  // one statement, atomic on its own
      insert_attempts_and_events(tx, ch.attempts, ch.events);
      return;
    }
    pqxx::work tx(c);
    statements(tx);
    tx.commit();
  });
}

bool WebhookDeliveryStore::has_pending(const std::string& endpoint_id, const std::optional<std::string>& session) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 "
                            "AND (session = $2 OR (session IS NULL AND $2::text IS NULL)))", endpoint_id, session);
    return r[0][0].as<bool>();
  });
}

std::size_t WebhookDeliveryStore::pending_count() {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec("SELECT count(*) FROM webhook_deliveries")[0][0].as<std::size_t>();
  });
}

std::vector<ScheduledDelivery> WebhookDeliveryStore::claim_due(int limit, int lease_s) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement: the claim is atomic on its own
    auto rows = pg::exec_prepared(tx, R"SQL(
      UPDATE webhook_deliveries SET claimed_until = now() + make_interval(secs => $2)
      WHERE id IN (
        SELECT id FROM webhook_deliveries d
        WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
          AND (NOT d.ordered OR NOT EXISTS (
                 SELECT 1 FROM webhook_deliveries p
                 WHERE p.endpoint_id = d.endpoint_id AND (p.session = d.session OR (p.session IS NULL AND d.session IS NULL)) AND p.id < d.id))
        ORDER BY due_at LIMIT $1
        FOR UPDATE SKIP LOCKED)
      RETURNING id, endpoint_id::text, tenant_id::text, event_id::text, event_type, session, body, attempts, ordered
    )SQL", limit, lease_s);
    std::vector<ScheduledDelivery> out;
    for (const auto& r : rows) {
      ScheduledDelivery d;
      d.id = r[0].as<int64_t>();
      d.endpoint_id = r[1].as<std::string>();
      d.tenant_id = r[2].as<std::string>();
      d.event_id = r[3].as<std::string>();
      d.event_type = r[4].as<std::string>();
      if (!r[5].is_null()) d.session = r[5].as<std::string>();
      d.body = r[6].as<std::string>();
      d.attempts = r[7].as<int>();
      d.ordered = r[8].as<bool>();
      out.push_back(std::move(d));
    }
    return out;
  });
}

void WebhookDeliveryStore::record_attempts(const std::vector<AttemptRecord>& as) {
  if (as.empty()) return;
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement
    insert_attempts(tx, as);
  });
}

std::vector<AttemptRecord> WebhookDeliveryStore::attempts(const std::string& tenant_id, const std::string& endpoint_id,
                                                          int limit, const std::optional<std::string>& outcome) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto rows = pg::exec_prepared(tx, R"SQL(
      SELECT endpoint_id::text, tenant_id::text, event_id::text, event_type, attempt, outcome, http_status, error,
             latency_ms, response_excerpt, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      FROM webhook_attempts
      WHERE tenant_id = $1 AND endpoint_id = $2 AND ($4::text IS NULL OR outcome = $4)
      ORDER BY at DESC, id DESC LIMIT $3
    )SQL", tenant_id, endpoint_id, limit, outcome);
    std::vector<AttemptRecord> out;
    for (const auto& r : rows) {
      AttemptRecord a;
      a.endpoint_id = r[0].as<std::string>();
      a.tenant_id = r[1].as<std::string>();
      a.event_id = r[2].as<std::string>();
      a.event_type = r[3].as<std::string>();
      a.attempt = r[4].as<int>();
      a.outcome = r[5].as<std::string>();
      if (!r[6].is_null()) a.http_status = r[6].as<int>();
      if (!r[7].is_null()) a.error = r[7].as<std::string>();
      a.latency_ms = r[8].is_null() ? 0 : r[8].as<int>();
      if (!r[9].is_null()) a.response_excerpt = r[9].as<std::string>();
      a.at = r[10].as<std::string>();
      out.push_back(std::move(a));
    }
    return out;
  });
}

std::size_t WebhookDeliveryStore::purge_attempts_older_than(int days, int limit) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement
    auto r = pg::exec_prepared(tx, R"SQL(
      DELETE FROM webhook_attempts WHERE id IN (
        SELECT id FROM webhook_attempts WHERE at < now() - make_interval(days => $1) ORDER BY at LIMIT $2)
    )SQL", days, limit);
    return static_cast<std::size_t>(r.affected_rows());
  });
}

}  // namespace sb
