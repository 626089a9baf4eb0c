#include "switchboard/core/webhook_store.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {
namespace {

// Exact types we emit today; families may grow (session.* arrives with session lifecycle).
const std::vector<std::string> kEventTypes = {"message.sent",     "message.failed", "message.delivered", "message.read",
                                              "message.received", "session.status", "session.qr",        "session.deleted",
                                              "webhook.endpoint.disabled"};
const std::vector<std::string> kFamilies = {"message", "session", "webhook"};

const char* kWebhookColumns = R"SQL(
  id::text, tenant_id::text, url, array_to_json(events)::text, secret, previous_secret,
  to_char(previous_secret_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  enabled, disabled_reason, ordering,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))SQL";

WebhookEndpoint from_row(const pqxx::row& r) {
  WebhookEndpoint e;
  e.id = r[0].as<std::string>();
  e.tenant_id = r[1].as<std::string>();
  e.url = r[2].as<std::string>();
  e.events = nlohmann::json::parse(r[3].as<std::string>()).get<std::vector<std::string>>();
  e.secret = r[4].as<std::string>();
  if (!r[5].is_null()) e.previous_secret = r[5].as<std::string>();
  if (!r[6].is_null()) e.previous_secret_expires_at = r[6].as<std::string>();
  e.enabled = r[7].as<bool>();
  if (!r[8].is_null()) e.disabled_reason = r[8].as<std::string>();
  e.ordering = r[9].as<std::string>();
  e.created_at = r[10].as<std::string>();
  e.updated_at = r[11].as<std::string>();
  return e;
}

}  // namespace

bool valid_event_pattern(const std::string& p) {
  if (p == "*") return true;
  if (p.size() > 2 && p.compare(p.size() - 2, 2, ".*") == 0)
    return std::find(kFamilies.begin(), kFamilies.end(), p.substr(0, p.size() - 2)) != kFamilies.end();
  return std::find(kEventTypes.begin(), kEventTypes.end(), p) != kEventTypes.end();
}

bool event_matches(const std::string& pattern, const std::string& type) {
  if (pattern == "*" || pattern == type) return true;
  if (pattern.size() > 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0)
    return type.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;  // "session." prefix
  return false;
}

WebhookEndpoint WebhookStore::create(const WebhookEndpoint& in) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = pg::exec_prepared(tx, std::string("INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret, enabled, ordering) "
                                        "VALUES ($1, $2, $3, $4::text[], $5, $6, $7) RETURNING ") + kWebhookColumns,
                            new_uuid_v7(), in.tenant_id, in.url, pg::array_literal(in.events), in.secret, in.enabled,
                            in.ordering);
    tx.commit();
    return from_row(r[0]);
  });
}

std::vector<WebhookEndpoint> WebhookStore::list(const std::string& tenant_id) {
  return pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::vector<WebhookEndpoint> out;
    for (const auto& r : pg::exec_prepared(tx, std::string("SELECT ") + kWebhookColumns +
                                        " FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at", tenant_id))
      out.push_back(from_row(r));
    return out;
  });
}

std::map<std::string, std::vector<WebhookEndpoint>> WebhookStore::list_many(const std::vector<std::string>& tenant_ids) {
  std::map<std::string, std::vector<WebhookEndpoint>> out;
  std::map<std::string, std::string> asked;  // PostgreSQL's spelling of a uuid (lower case) → the caller's
  for (const auto& t : tenant_ids) {
    out[t];  // a tenant without endpoints has an empty list
    std::string lower = t;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    asked[lower] = t;
  }
  if (tenant_ids.empty()) return out;
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    for (const auto& r : pg::exec_prepared(tx, std::string("SELECT ") + kWebhookColumns +
                                               " FROM webhook_endpoints WHERE tenant_id = ANY($1::uuid[]) ORDER BY tenant_id, created_at",
                                           pg::array_literal(tenant_ids)))
      out[asked[r[1].as<std::string>()]].push_back(from_row(r));
  });
  return out;
}

std::optional<WebhookEndpoint> WebhookStore::get(const std::string& tenant_id, const std::string& id) {
  if (!MessageStore::valid_id(id)) return std::nullopt;
  return pool_.run([&](pqxx::connection& c) -> std::optional<WebhookEndpoint> {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, std::string("SELECT ") + kWebhookColumns + " FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2",
                            id, tenant_id);
    if (r.empty()) return std::nullopt;
    return from_row(r[0]);
  });
}

std::optional<WebhookEndpoint> WebhookStore::update(const std::string& tenant_id, const std::string& id,
                                                    const WebhookEndpointChange& ch) {
  if (!MessageStore::valid_id(id)) return std::nullopt;
  return pool_.run([&](pqxx::connection& c) -> std::optional<WebhookEndpoint> {
    pqxx::work tx(c);
    // NULL parameters leave a column as it is; re-enabling clears the disable reason.
    auto r = pg::exec_prepared(tx, std::string(R"SQL(
      UPDATE webhook_endpoints SET
        url = COALESCE($3, url),
        events = COALESCE($4::text[], events),
        enabled = COALESCE($5::boolean, enabled),
        disabled_reason = CASE WHEN $5::boolean THEN NULL ELSE disabled_reason END,
        ordering = COALESCE($6, ordering),
        previous_secret = CASE WHEN $7::text IS NULL THEN previous_secret ELSE secret END,
        previous_secret_expires_at = CASE WHEN $7::text IS NULL THEN previous_secret_expires_at
                                          ELSE now() + make_interval(secs => $8) END,
        secret = COALESCE($7, secret),
        updated_at = now()
      WHERE id = $1 AND tenant_id = $2 RETURNING )SQL") + kWebhookColumns,
                            id, tenant_id, ch.url,
                            ch.events ? std::optional<std::string>(pg::array_literal(*ch.events)) : std::nullopt,
                            ch.enabled, ch.ordering, ch.new_secret, ch.rotation_window_s);
    tx.commit();
    if (r.empty()) return std::nullopt;
    return from_row(r[0]);
  });
}

bool WebhookStore::remove(const std::string& tenant_id, const std::string& id) {
  if (!MessageStore::valid_id(id)) return false;
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = pg::exec_prepared(tx, "DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2 RETURNING id", id, tenant_id);
    tx.commit();
    return !r.empty();
  });
}

std::vector<std::string> WebhookStore::record_health(const std::vector<std::string>& failed,
                                                     const std::vector<std::string>& succeeded, int disable_after_s) {
  if (failed.empty() && succeeded.empty()) return {};
  return pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    std::vector<std::string> overdue;
    if (!succeeded.empty())
      pg::exec_prepared(tx, "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL",
                     pg::array_literal(succeeded));
    if (!failed.empty()) {
      pg::exec_prepared(tx, "UPDATE webhook_endpoints SET failing_since = now() WHERE id = ANY($1::uuid[]) AND failing_since IS NULL",
                     pg::array_literal(failed));
      for (const auto& r : pg::exec_prepared(tx, "SELECT id::text FROM webhook_endpoints WHERE id = ANY($1::uuid[]) AND enabled "
                                          "AND failing_since < now() - make_interval(secs => $2)",
                                          pg::array_literal(failed), disable_after_s))
        overdue.push_back(r[0].as<std::string>());
    }
    tx.commit();
    return overdue;
  });
}

std::optional<WebhookEndpoint> WebhookStore::disable(const std::string& id, const std::string& reason,
                                                     const std::function<void(const WebhookEndpoint&)>& before) {
  return pool_.run([&](pqxx::connection& c) -> std::optional<WebhookEndpoint> {
    pqxx::work tx(c);
    auto r = pg::exec_prepared(tx, std::string("SELECT ") + kWebhookColumns + " FROM webhook_endpoints WHERE id = $1 AND enabled FOR UPDATE", id);
    if (r.empty()) return std::nullopt;
    auto endpoint = from_row(r[0]);
    before(endpoint);
    pg::exec_prepared(tx, "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1",
                   id, reason);
    tx.commit();
    endpoint.enabled = false;
    endpoint.disabled_reason = reason;
    return endpoint;
  });
}

}  // namespace sb
