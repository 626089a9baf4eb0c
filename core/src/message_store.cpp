#include "switchboard/core/message_store.hpp"

#include <algorithm>
#include <memory>
#include <regex>
#include <set>

namespace sb {

bool MessageStore::valid_id(const std::string& id) {
  static const std::regex re("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
  return std::regex_match(id, re);
}

std::vector<InsertOutcome> MessageStore::insert_queued(const std::vector<NewMessage>& batch) {
  std::vector<InsertOutcome> out(batch.size());
  // Without idempotency keys the batch is one INSERT: autocommit makes it its own transaction,
  // saving BEGIN and COMMIT (two of intake's three statements per batch). With keys, a second
  // statement may read the earlier messages, so both share one transaction.
  const bool keyed = std::any_of(batch.begin(), batch.end(), [](const NewMessage& m) { return m.idempotency_key.has_value(); });
  pool_.run([&](pqxx::connection& c) {
    std::unique_ptr<pqxx::transaction_base> txp;
    if (keyed) txp = std::make_unique<pqxx::work>(c);
    else txp = std::make_unique<pqxx::nontransaction>(c);
    auto& tx = *txp;
    std::vector<std::size_t> pending(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) pending[i] = i;
    // A repeated key's earlier row can vanish between our INSERT (which it blocked) and the
    // lookup: its own request was refused by Kafka and discarded it (found by the chaos
    // harness: HTTP 500 map::at). The key is free then, so the row is inserted on a next round.
    for (int round = 0; round < 3 && !pending.empty(); ++round) {
      std::vector<std::string> ids, tenants, sessions, tos, texts, prios;
      std::vector<std::optional<std::string>> keys;
      for (auto i : pending) {
        const auto& m = batch[i];
        ids.push_back(m.id);
        tenants.push_back(m.tenant_id);
        sessions.push_back(m.session);
        tos.push_back(m.to);
        texts.push_back(m.text);
        prios.push_back(m.priority);
        keys.push_back(m.idempotency_key);
      }
      auto inserted = pg::exec_prepared(tx, R"SQL(
        WITH input AS (
          SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
            AS t(id, tenant_id, session, recipient, body, priority, idempotency_key)
        ), ins AS (
          INSERT INTO messages (id, tenant_id, session, recipient, body, priority, status, idempotency_key)
          SELECT id, tenant_id, session, recipient, body, priority, 'queued', idempotency_key FROM input
          ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
          RETURNING id
        ), hist AS (
          INSERT INTO message_status_history (message_id, status, at) SELECT id, 'queued', now() FROM ins
        )
        SELECT id::text FROM ins
      )SQL",
                                     pg::array_literal(ids), pg::array_literal(tenants), pg::array_literal(sessions),
                                     pg::array_literal(tos), pg::array_literal(texts), pg::array_literal(prios),
                                     pg::array_literal_nullable(keys));
      std::set<std::string> created;
      for (const auto& r : inserted) created.insert(r[0].as<std::string>());
      // Rows not inserted repeated an idempotency key (of an earlier request, or of an earlier
      // row in this very batch): a second statement sees both, through the (tenant, key) index.
      std::vector<std::size_t> repeats;
      std::vector<std::string> repeat_tenants, repeat_keys;
      for (auto i : pending) {
        if (created.count(batch[i].id)) {
          out[i] = {batch[i].id, true, "queued", batch[i].priority};
        } else if (batch[i].idempotency_key) {
          repeats.push_back(i);
          repeat_tenants.push_back(batch[i].tenant_id);
          repeat_keys.push_back(*batch[i].idempotency_key);
        }
      }
      pending.clear();
      if (repeats.empty()) break;
      // A queued earlier row is touched (updated_at): its request's discard, should Kafka refuse
      // that request, must then leave it to this one, which republishes the same id (the chaos
      // harness found two ids sent for one key when the discard ran after such a replay).
      auto earlier = pg::exec_prepared(tx, R"SQL(
        WITH k AS (
          SELECT * FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, idempotency_key)
        ), touched AS (
          UPDATE messages m SET updated_at = clock_timestamp()
          FROM k WHERE m.tenant_id = k.tenant_id AND m.idempotency_key = k.idempotency_key AND m.status = 'queued'
          RETURNING m.tenant_id::text, m.idempotency_key, m.id::text, m.status, m.priority
        )
        SELECT * FROM touched
        UNION ALL
        SELECT m.tenant_id::text, m.idempotency_key, m.id::text, m.status, m.priority
        FROM k JOIN messages m ON m.tenant_id = k.tenant_id AND m.idempotency_key = k.idempotency_key
        WHERE m.status <> 'queued'
      )SQL", pg::array_literal(repeat_tenants), pg::array_literal(repeat_keys));
      std::map<std::pair<std::string, std::string>, InsertOutcome> by_key;
      for (const auto& r : earlier)
        by_key[{r[0].as<std::string>(), r[1].as<std::string>()}] = {r[2].as<std::string>(), false, r[3].as<std::string>(), r[4].as<std::string>()};
      for (auto i : repeats) {
        auto it = by_key.find({batch[i].tenant_id, *batch[i].idempotency_key});
        if (it != by_key.end()) out[i] = it->second;
        else pending.push_back(i);  // gone meanwhile: insert it on the next round
      }
    }
    if (!pending.empty())
      throw Unavailable("the Idempotency-Key '" + *batch[pending[0]].idempotency_key +
                        "' was released and taken again by concurrent requests; retry");
    if (keyed) static_cast<pqxx::work&>(tx).commit();
  });
  for (std::size_t i = 0; i < batch.size(); ++i)
    if (out[i].id.empty()) throw Error(ErrorKind::Internal, "message " + batch[i].id + " was neither inserted nor found");
  return out;
}

void MessageStore::discard(const std::string& id) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    // Only while no retry with the same Idempotency-Key has touched it (insert_queued): that
    // retry republishes this id, so the row must stay.
    pg::exec_prepared(tx, "DELETE FROM messages WHERE id = $1 AND status = 'queued' AND updated_at = created_at", id);
    tx.commit();
  });
}

std::optional<MessageView> MessageStore::get(const std::string& tenant_id, const std::string& id) {
  if (!valid_id(id)) return std::nullopt;
  return pool_.run([&](pqxx::connection& c) -> std::optional<MessageView> {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, R"SQL(
      SELECT id::text, session, recipient, body, priority, status, provider_message_id, error, idempotency_key,
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
             to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
             to_char(send_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      FROM messages WHERE id = $1 AND tenant_id = $2)SQL", id, tenant_id);
    if (r.empty()) return std::nullopt;
    MessageView v;
    const auto& row = r[0];
    v.id = row[0].as<std::string>();
    v.session = row[1].as<std::string>();
    v.to = row[2].as<std::string>();
    v.text = row[3].as<std::string>();
    v.priority = row[4].as<std::string>();
    v.status = row[5].as<std::string>();
    if (!row[6].is_null()) v.provider_message_id = row[6].as<std::string>();
    if (!row[7].is_null()) v.error = row[7].as<std::string>();
    if (!row[8].is_null()) v.idempotency_key = row[8].as<std::string>();
    v.created_at = row[9].as<std::string>();
    v.updated_at = row[10].as<std::string>();
    if (!row[11].is_null()) v.send_at = row[11].as<std::string>();
    auto h = pg::exec_prepared(tx, R"SQL(
      SELECT status, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), detail
      FROM message_status_history WHERE message_id = $1 ORDER BY at, status DESC)SQL", id);
    for (const auto& hr : h) {
      StatusChange s{hr[0].as<std::string>(), hr[1].as<std::string>(), std::nullopt};
      if (!hr[2].is_null()) s.detail = hr[2].as<std::string>();
      v.history.push_back(s);
    }
    return v;
  });
}

namespace {
constexpr const char* kUtcMillis = R"(YYYY-MM-DD"T"HH24:MI:SS.MS"Z")";

KnownMessage known_from(const pqxx::row& row, int first) {
  KnownMessage k;
  k.status = row[first].as<std::string>();
  if (!row[first + 1].is_null()) k.provider_message_id = row[first + 1].as<std::string>();
  if (!row[first + 2].is_null()) k.error = row[first + 2].as<std::string>();
  k.updated_at = row[first + 3].as<std::string>();
  return k;
}
}  // namespace

std::map<std::string, KnownMessage> MessageStore::lookup(const std::vector<std::string>& ids) {
  std::map<std::string, KnownMessage> out;
  if (ids.empty()) return out;
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, std::string(R"SQL(
      SELECT id::text, status, provider_message_id, error,
             to_char(updated_at AT TIME ZONE 'UTC', ')SQL") + kUtcMillis + R"SQL(')
      FROM messages WHERE id = ANY($1::uuid[]))SQL", pg::array_literal(ids));
    for (const auto& row : r) out[row[0].as<std::string>()] = known_from(row, 1);
  });
  return out;
}

std::vector<SendClaim> MessageStore::claim_for_send(const std::vector<SendCommand>& commands) {
  std::vector<SendClaim> out(commands.size());
  if (commands.empty()) return out;
  std::vector<std::string> ids, tenants, sessions, tos, texts, prios;
  for (const auto& c : commands) {
    ids.push_back(c.id);
    tenants.push_back(c.tenant);
    sessions.push_back(c.session);
    tos.push_back(c.to);
    texts.push_back(c.text);
    prios.push_back(c.priority);
  }
  pool_.run([&](pqxx::connection& c) {
    // One statement, so autocommit is its transaction (no BEGIN/COMMIT round trips). The outer
    // SELECT sees the rows as they were before the CTE changed them: the state of the ones it
    // did not claim.
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, std::string(R"SQL(
      WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
          AS t(id, tenant_id, session, recipient, body, priority)
      ), sess AS (
        SELECT s.tenant_id, s.name, s.status, s.deleting, s.provider, s.node, s.engine_name, s.phone_number_id, s.secrets,
               s.generation, n.url AS node_url, n.secrets AS node_secrets
        FROM sessions s LEFT JOIN engine_nodes n ON n.name = s.node JOIN (SELECT DISTINCT tenant_id, session FROM input) k ON s.tenant_id = k.tenant_id AND s.name = k.session
      ), claimed AS (
        INSERT INTO messages (id, tenant_id, session, recipient, body, priority, status)
        SELECT i.id, i.tenant_id, i.session, i.recipient, i.body, i.priority, 'sending'
        FROM input i JOIN sess s ON s.tenant_id = i.tenant_id AND s.name = i.session
        WHERE s.status = 'WORKING' AND NOT s.deleting
        -- release_at is NULL for every message but a claimed scheduled one: setting it to NULL
        -- again changes no indexed value, so the update stays HOT (migration 013).
        ON CONFLICT (id) DO UPDATE SET status = 'sending', release_at = NULL, updated_at = now()
          WHERE messages.status = 'queued' OR (messages.status = 'scheduled' AND messages.send_at <= now())  -- a scheduler's release (scheduled_store.hpp)
        RETURNING id
      )
      SELECT i.id::text, c.id IS NOT NULL, m.status, m.provider_message_id, m.error,
             to_char(m.updated_at AT TIME ZONE 'UTC', ')SQL") + kUtcMillis + R"SQL('),
             s.status, s.deleting, s.provider, s.node, s.engine_name, s.phone_number_id, s.secrets,
             s.generation, s.node_url, s.node_secrets
      FROM input i LEFT JOIN claimed c ON c.id = i.id LEFT JOIN messages m ON m.id = i.id
                   LEFT JOIN sess s ON s.tenant_id = i.tenant_id AND s.name = i.session
    )SQL",
                            pg::array_literal(ids), pg::array_literal(tenants), pg::array_literal(sessions),
                            pg::array_literal(tos), pg::array_literal(texts), pg::array_literal(prios));
    std::map<std::string, SendClaim> by_id;
    for (const auto& row : r) {
      SendClaim claim;
      const bool session_known = !row[6].is_null();
      if (session_known) {
        claim.session_status = row[6].as<std::string>();
        claim.provider = row[8].as<std::string>();
        auto text = [&](int k) { return row[k].is_null() ? std::string() : row[k].as<std::string>(); };
        claim.node = text(9);
        claim.engine_name = text(10);
        claim.phone_number_id = text(11);
        claim.secrets = text(12);
        claim.generation = row[13].as<int64_t>();
        claim.node_url = text(14);
        claim.node_secrets = text(15);
        if (row[7].as<bool>()) claim.session_status = "DELETING";
      }
      if (row[1].as<bool>()) {
        claim.status = SendClaim::Status::Fresh;
      } else if (!row[2].is_null() && row[2].as<std::string>() != "queued" && row[2].as<std::string>() != "scheduled") {
        // ('scheduled' is as good as 'queued' here: a release whose commit this statement's
        // snapshot predates, or one rolled back; the session's status decides, as for queued.)
        claim.known = known_from(row, 2);
        claim.status = claim.known.status == "sending" ? SendClaim::Status::InProgress : SendClaim::Status::Final;
      } else if (!session_known) {
        claim.status = SendClaim::Status::UnknownSession;
      } else {
        claim.status = SendClaim::Status::NotWorking;  // queued (or no row yet), its session not WORKING
      }
      by_id[row[0].as<std::string>()] = claim;
    }
    for (std::size_t i = 0; i < commands.size(); ++i) out[i] = by_id.at(commands[i].id);
  });
  return out;
}

void MessageStore::release_claims(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    pg::exec_prepared(tx, "UPDATE messages SET status = 'queued', updated_at = now() WHERE id = ANY($1::uuid[]) AND status = 'sending'",
                   pg::array_literal(ids));
  });
}

std::set<std::string> MessageStore::record_outcomes(const std::vector<MessageOutcome>& outcomes) {
  std::set<std::string> applied;
  if (outcomes.empty()) return applied;
  std::vector<std::string> ids, tenants, sessions, tos, texts, prios, statuses, ats;
  std::vector<std::optional<std::string>> provider_ids, errors;
  std::set<std::string> seen;
  for (const auto& o : outcomes) {
    if (!seen.insert(o.id).second) continue;  // one row may not be updated twice in a statement
    ids.push_back(o.id);
    tenants.push_back(o.tenant_id);
    sessions.push_back(o.session);
    tos.push_back(o.to);
    texts.push_back(o.text);
    prios.push_back(o.priority);
    statuses.push_back(o.status);
    ats.push_back(o.at);
    provider_ids.push_back(o.provider_message_id);
    errors.push_back(o.error);
  }
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);  // one statement: autocommit is its transaction
    auto r = pg::exec_prepared(tx, R"SQL(
      WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::timestamptz[])
          AS t(id, tenant_id, session, recipient, body, priority, status, provider_message_id, error, at)
      ), up AS (
        INSERT INTO messages (id, tenant_id, session, recipient, body, priority, status, provider_message_id, error,
                              created_at, updated_at)
        SELECT id, tenant_id, session, recipient, body, priority, status, provider_message_id, error, at, at FROM input
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, provider_message_id = EXCLUDED.provider_message_id,
                                       error = EXCLUDED.error, updated_at = EXCLUDED.updated_at
          WHERE messages.status IN ('queued', 'sending')
        RETURNING id
      ), history AS (
        INSERT INTO message_status_history (message_id, status, at, detail)
        SELECT i.id, i.status, i.at, COALESCE(i.error, i.provider_message_id) FROM input i JOIN up ON up.id = i.id
      )
      SELECT id::text FROM up
    )SQL",
                   pg::array_literal(ids), pg::array_literal(tenants), pg::array_literal(sessions),
                   pg::array_literal(tos), pg::array_literal(texts), pg::array_literal(prios),
                   pg::array_literal(statuses), pg::array_literal_nullable(provider_ids),
                   pg::array_literal_nullable(errors), pg::array_literal(ats));
    for (const auto& row : r) applied.insert(row[0].as<std::string>());
  });
  return applied;
}

}  // namespace sb
