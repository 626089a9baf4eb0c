#include "switchboard/core/session_store.hpp"

#include "switchboard/core/errors.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/tenant_store.hpp"

namespace sb {

namespace {

constexpr const char* kSessionColumns = R"SQL(
  tenant_id::text, name, provider, status,
  to_char(status_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  raw_status, reason, node, engine_name, phone_number_id, account, config::text, secrets,
  qr_value, qr_png, to_char(qr_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), deleting,
  generation, storage_group)SQL";

std::optional<std::string> opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

SessionRecord record_from(const pqxx::row& r) {
  SessionRecord s;
  s.tenant_id = r[0].as<std::string>();
  s.name = r[1].as<std::string>();
  s.provider = r[2].as<std::string>();
  s.status = r[3].as<std::string>();
  s.status_at = r[4].as<std::string>();
  s.created_at = r[5].as<std::string>();
  s.updated_at = r[6].as<std::string>();
  s.raw_status = opt(r[7]);
  s.reason = opt(r[8]);
  s.node = opt(r[9]);
  s.engine_name = opt(r[10]);
  s.phone_number_id = opt(r[11]);
  s.account = opt(r[12]);
  s.config = nlohmann::json::parse(r[13].as<std::string>());
  s.secrets = opt(r[14]);
  s.qr_value = opt(r[15]);
  s.qr_png = opt(r[16]);
  s.qr_at = opt(r[17]);
  s.deleting = r[18].as<bool>();
  s.generation = r[19].as<int64_t>();
  s.storage_group = opt(r[20]);
  return s;
}

}  // namespace

std::string normalize_session_status(const std::string& s) {
  for (const char* known : {"STOPPED", "STARTING", "SCAN_QR_CODE", "WORKING", "PAUSED", "FAILED"})
    if (s == known) return s;
  return "UNKNOWN";
}

std::string engine_session_name(const std::string& tenant_id, const std::string& session) {
  return "sb" + sha256_hex(tenant_id + "/" + session).substr(0, 30);
}

void SessionStore::create(const NewSession& input, const std::function<void(pqxx::work&, NewSession&)>& place) {
  if (!TenantStore::valid_session_name(input.name))
    throw InvalidInput("session name '" + input.name + "' is invalid: use 1-64 of A-Z, a-z, 0-9, '_', '.', '-'", "id");
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    NewSession s = input;
    if (place) {
      if (!tx.exec_params("SELECT 1 FROM sessions WHERE tenant_id = $1 AND name = $2", s.tenant_id, s.name).empty())
        throw Conflict("session '" + s.name + "' already exists for this tenant");
      place(tx, s);
    }
    pqxx::result r;
    try {
      r = tx.exec_params(R"SQL(
        INSERT INTO sessions (tenant_id, name, provider, status, config, secrets, node, engine_name, phone_number_id,
                              storage_group, generation, holds_slot)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (tenant_id, name) DO NOTHING RETURNING name)SQL",
                         s.tenant_id, s.name, s.provider, s.status, s.config.dump(), s.secrets, s.node, s.engine_name,
                         s.phone_number_id, s.storage_group, s.generation, s.holds_slot);
    } catch (const pqxx::unique_violation&) {
      throw Conflict("phone_number_id '" + s.phone_number_id.value_or("") + "' belongs to another session already");
    }
    if (r.empty()) throw Conflict("session '" + s.name + "' already exists for this tenant");
    tx.exec_params("INSERT INTO session_status_history (tenant_id, session, status, at) VALUES ($1, $2, $3, now())",
                   s.tenant_id, s.name, s.status);
    tx.commit();
  });
}

std::optional<SessionRecord> SessionStore::get(const std::string& tenant_id, const std::string& name) {
  if (!TenantStore::valid_session_name(name)) return std::nullopt;
  return pool_.run([&](pqxx::connection& c) -> std::optional<SessionRecord> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params(std::string("SELECT ") + kSessionColumns + " FROM sessions WHERE tenant_id = $1 AND name = $2",
                            tenant_id, name);
    if (r.empty()) return std::nullopt;
    return record_from(r[0]);
  });
}

std::vector<SessionRecord> SessionStore::list(const std::string& tenant_id) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<SessionRecord> out;
    for (const auto& row : tx.exec_params(std::string("SELECT ") + kSessionColumns + " FROM sessions WHERE tenant_id = $1 ORDER BY name",
                                          tenant_id))
      out.push_back(record_from(row));
    return out;
  });
}

std::vector<SessionStatusChange> SessionStore::history(const std::string& tenant_id, const std::string& name, int limit) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<SessionStatusChange> out;
    // The latest `limit`, oldest first.
    auto r = tx.exec_params(R"SQL(
      SELECT status, raw_status, reason, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM (
        SELECT * FROM session_status_history WHERE tenant_id = $1 AND session = $2 ORDER BY at DESC LIMIT $3) h
      ORDER BY at)SQL", tenant_id, name, limit);
    for (const auto& row : r) out.push_back({row[0].as<std::string>(), opt(row[1]), opt(row[2]), row[3].as<std::string>()});
    return out;
  });
}

SessionStore::Applied SessionStore::set_status(const std::string& tenant_id, const std::string& name,
                                               const SessionStatusChange& ch, const std::optional<std::string>& account,
                                               bool clear_account, std::optional<int64_t> generation, bool from_provider) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    Applied a;
    auto before = tx.exec_params(
        "SELECT status, status_at <= $3::timestamptz, generation FROM sessions WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
        tenant_id, name, ch.at);
    if (before.empty()) return a;
    a.exists = true;
    if (generation && before[0][2].as<int64_t>() != *generation) {
      a.stale = true;  // re-placed since this write's owner read it: not its to change
      return a;
    }
    const auto previous = before[0][0].as<std::string>();
    const bool newer = before[0][1].as<bool>();
    if (from_provider && previous == "PAUSED" && (ch.status == "WORKING" || ch.status == "STARTING")) {
      const std::string raw = ch.raw_status.value_or(ch.status);
      tx.exec_params("INSERT INTO session_status_history (tenant_id, session, status, raw_status, reason, at) "
                     "VALUES ($1, $2, 'PAUSED', $3, $4, $5)",
                     tenant_id, name, raw, "reported " + raw + " by the provider; stays PAUSED until its cool-down or POST resume",
                     ch.at);
      if (newer)
        tx.exec_params("UPDATE sessions SET raw_status = $3, status_at = $4, updated_at = now(), "
                       "account = COALESCE($5, account) WHERE tenant_id = $1 AND name = $2",
                       tenant_id, name, raw, ch.at, account);
      tx.commit();
      a.pause_kept = true;
      return a;
    }
    tx.exec_params("INSERT INTO session_status_history (tenant_id, session, status, raw_status, reason, at) VALUES ($1, $2, $3, $4, $5, $6)",
                   tenant_id, name, ch.status, ch.raw_status, ch.reason, ch.at);
    if (newer) {
      // A QR belongs to one pairing attempt: gone once the session leaves SCAN_QR_CODE.
      tx.exec_params(R"SQL(
        UPDATE sessions SET status = $3, raw_status = $4, reason = $5, status_at = $6, updated_at = now(),
               account = CASE WHEN $8 THEN NULL ELSE COALESCE($7, account) END,
               qr_value = CASE WHEN $3 = 'SCAN_QR_CODE' THEN qr_value END,
               qr_png = CASE WHEN $3 = 'SCAN_QR_CODE' THEN qr_png END
        WHERE tenant_id = $1 AND name = $2)SQL",
                     tenant_id, name, ch.status, ch.raw_status, ch.reason, ch.at, account, clear_account);
      if (previous != ch.status) a.previous = previous;
    }
    tx.commit();
    return a;
  });
}

void SessionStore::set_qr(const std::string& tenant_id, const std::string& name, const std::string& value,
                          const std::string& png_base64) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params("UPDATE sessions SET qr_value = $3, qr_png = $4, qr_at = now() WHERE tenant_id = $1 AND name = $2",
                   tenant_id, name, value, png_base64);
  });
}

bool SessionStore::mark_deleting(const std::string& tenant_id, const std::string& name) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return !tx.exec_params("UPDATE sessions SET deleting = true, updated_at = now() WHERE tenant_id = $1 AND name = $2 RETURNING 1",
                           tenant_id, name)
                .empty();
  });
}

void SessionStore::remove(const std::string& tenant_id, const std::string& name) {
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec_params("DELETE FROM sessions WHERE tenant_id = $1 AND name = $2", tenant_id, name);
  });
}

std::optional<SessionStore::Owner> SessionStore::find_by_engine_name(const std::string& node, const std::string& engine_name) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<Owner> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT tenant_id::text, name, generation FROM sessions WHERE engine_name = $1 AND node = $2",
                            engine_name, node);
    if (r.empty()) return std::nullopt;
    return Owner{r[0][0].as<std::string>(), r[0][1].as<std::string>(), r[0][2].as<int64_t>()};
  });
}

std::optional<SessionStore::Owner> SessionStore::find_by_phone_number_id(const std::string& pnid) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<Owner> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT tenant_id::text, name FROM sessions WHERE phone_number_id = $1", pnid);
    if (r.empty()) return std::nullopt;
    return Owner{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
  });
}

}  // namespace sb
