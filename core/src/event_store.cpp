#include "switchboard/core/event_store.hpp"

#include "switchboard/core/errors.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {

namespace {

const char* kEventColumns = R"SQL(
  id::text, tenant_id::text, type, session,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), body)SQL";

StoredEvent from_row(const pqxx::row& r) {
  StoredEvent e;
  e.id = r[0].as<std::string>();
  e.tenant_id = r[1].as<std::string>();
  e.type = r[2].as<std::string>();
  if (!r[3].is_null()) e.session = r[3].as<std::string>();
  e.occurred_at = r[4].as<std::string>();
  e.body = r[5].as<std::string>();
  return e;
}

}  // namespace

EventStore::InsertRows EventStore::insert_rows(const std::vector<StoredEvent>& events) {
  std::vector<std::string> ids, tenants, types, occurred, bodies;
  std::vector<std::optional<std::string>> sessions;
  for (const auto& e : events) {
    ids.push_back(e.id);
    tenants.push_back(e.tenant_id);
    types.push_back(e.type);
    sessions.push_back(e.session);
    occurred.push_back(e.occurred_at);
    bodies.push_back(e.body);
  }
  return {pg::array_literal(ids), pg::array_literal(tenants), pg::array_literal(types),
          pg::array_literal_nullable(sessions), pg::array_literal(occurred), pg::array_literal(bodies)};
}

std::string EventStore::insert_sql(int first) {
  auto p = [first](int n) { return "$" + std::to_string(first + n - 1); };
  return "INSERT INTO events (id, tenant_id, type, session, occurred_at, body)\n"
         "    SELECT * FROM unnest(" + p(1) + "::uuid[], " + p(2) + "::uuid[], " + p(3) + "::text[], " + p(4) +
         "::text[], " + p(5) + "::timestamptz[], " + p(6) + "::text[])\n"
         "    ON CONFLICT (id) DO NOTHING";
}

void EventStore::insert(pqxx::transaction_base& tx, const std::vector<StoredEvent>& events) {
  if (events.empty()) return;
  static const std::string sql = insert_sql(1);
  const auto r = insert_rows(events);
  pg::exec_prepared(tx, sql, r.ids, r.tenants, r.types, r.sessions, r.occurred, r.bodies);
}

void EventStore::record(const std::vector<StoredEvent>& events) {
  if (events.empty()) return;
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement: atomic on its own
    insert(tx, events);
  });
}

std::optional<StoredEvent> EventStore::get(const std::string& tenant_id, const std::string& event_id) {
  if (!MessageStore::valid_id(event_id) || !MessageStore::valid_id(tenant_id)) return std::nullopt;
  return pool_.run([&](pqxx::connection& c) -> std::optional<StoredEvent> {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, std::string("SELECT ") + kEventColumns + " FROM events WHERE id = $1 AND tenant_id = $2",
                            event_id, tenant_id);
    if (r.empty()) return std::nullopt;
    return from_row(r[0]);
  });
}

std::vector<StoredEvent> EventStore::since(const std::string& tenant_id, const std::string& since, int limit) {
  if (!MessageStore::valid_id(tenant_id) || limit <= 0) return {};
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    pqxx::result rows;
    try {
      rows = pg::exec_prepared(tx, std::string("SELECT ") + kEventColumns +
                                " FROM events WHERE tenant_id = $1 AND occurred_at >= $2::timestamptz"
                                " ORDER BY occurred_at, id LIMIT $3",
                            tenant_id, since, limit);
    } catch (const pqxx::data_exception&) {  // out-of-range date or time: the caller's input
      throw InvalidInput("'" + since + "' is not a valid RFC 3339 time", "since");
    }
    std::vector<StoredEvent> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(from_row(r));
    return out;
  });
}

std::size_t EventStore::purge_older_than(int days, int limit) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement
    auto r = pg::exec_prepared(tx, R"SQL(
      DELETE FROM events WHERE id IN (
        SELECT id FROM events WHERE recorded_at < now() - make_interval(days => $1)
        ORDER BY recorded_at LIMIT $2)
    )SQL", days, limit);
    return static_cast<std::size_t>(r.affected_rows());
  });
}

}  // namespace sb
