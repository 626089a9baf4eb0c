#include "switchboard/core/receipt_store.hpp"

#include <map>
#include <set>

#include "switchboard/core/ids.hpp"

namespace sb {

int ReceiptStore::rank(const std::string& s) {
  if (s == "queued") return 0;
  if (s == "sending") return 1;
  if (s == "sent") return 2;
  if (s == "delivered") return 3;
  if (s == "read") return 4;
  return -1;  // failed: judged apart
}

std::string Inbound::id() const { return uuid_from_name("inbound:" + tenant_id + "/" + session + "/" + provider_message_id); }

std::vector<AppliedReceipt> ReceiptStore::apply(const std::vector<Receipt>& receipts) {
  std::vector<AppliedReceipt> out(receipts.size());
  if (receipts.empty()) return out;
  std::vector<std::string> pmids, tenants;
  for (const auto& r : receipts) {
    pmids.push_back(r.provider_message_id);
    tenants.push_back(r.tenant_id);
  }
  pool_.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    // The messages these receipts name, locked: two batches never move one message at once.
    auto found = pg::exec_prepared(tx, R"SQL(
      SELECT m.provider_message_id, m.tenant_id::text, m.id::text, m.session, m.recipient, m.status
      FROM messages m JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::uuid[]) AS t(pmid, tenant_id)) i
        ON m.provider_message_id = i.pmid AND m.tenant_id = i.tenant_id
      ORDER BY m.id FOR UPDATE OF m)SQL",
                                pg::array_literal(pmids), pg::array_literal(tenants));
    struct Msg {
      std::string id, session, to, status;
    };
    std::map<std::pair<std::string, std::string>, Msg> by_pmid;
    for (const auto& row : found)
      by_pmid[{row[0].as<std::string>(), row[1].as<std::string>()}] = {row[2].as<std::string>(), row[3].as<std::string>(),
                                                                        row[4].as<std::string>(), row[5].as<std::string>()};
    std::vector<std::string> h_ids, h_status, h_at;
    std::vector<std::optional<std::string>> h_detail;
    std::map<std::string, std::pair<std::string, std::optional<std::string>>> final_status;  // message id → (status, error)
    for (std::size_t i = 0; i < receipts.size(); ++i) {
      const auto& r = receipts[i];
      auto it = by_pmid.find({r.provider_message_id, r.tenant_id});
      if (it == by_pmid.end()) continue;  // Unmatched
      auto& m = it->second;
      out[i].message_id = m.id;
      out[i].session = m.session;
      out[i].to = m.to;
      if (r.status == "sent") {
        out[i].effect = AppliedReceipt::Effect::Duplicate;  // our own outcome said so already
        continue;
      }
      h_ids.push_back(m.id);
      h_status.push_back(r.status);
      h_at.push_back(r.at);
      h_detail.push_back(r.error);
      if (r.status == "failed") {
        // An asynchronous failure counts only before the message was delivered.
        if (m.status == "failed") out[i].effect = AppliedReceipt::Effect::Duplicate;
        else if (rank(m.status) <= rank("sent")) {
          out[i].effect = AppliedReceipt::Effect::Forward;
          m.status = "failed";
          final_status[m.id] = {"failed", r.error};
        } else out[i].effect = AppliedReceipt::Effect::Backward;
        continue;
      }
      const int now = rank(m.status), next = rank(r.status);
      if (m.status == "failed" || next < now) out[i].effect = AppliedReceipt::Effect::Backward;
      else if (next == now) out[i].effect = AppliedReceipt::Effect::Duplicate;
      else {
        out[i].effect = AppliedReceipt::Effect::Forward;
        m.status = r.status;
        final_status[m.id] = {r.status, std::nullopt};
      }
    }
    if (!h_ids.empty())
      pg::exec_prepared(tx, R"SQL(
        INSERT INTO message_status_history (message_id, status, at, detail)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[])
        ON CONFLICT (message_id, status) WHERE status IN ('delivered', 'read') DO NOTHING)SQL",
                     pg::array_literal(h_ids), pg::array_literal(h_status), pg::array_literal(h_at),
                     pg::array_literal_nullable(h_detail));
    if (!final_status.empty()) {
      std::vector<std::string> ids, statuses;
      std::vector<std::optional<std::string>> errors;
      for (const auto& [id, st] : final_status) {
        ids.push_back(id);
        statuses.push_back(st.first);
        errors.push_back(st.second);
      }
      pg::exec_prepared(tx, R"SQL(
        UPDATE messages m SET status = u.status, error = COALESCE(u.error, m.error), updated_at = now()
        FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, status, error) WHERE m.id = u.id)SQL",
                     pg::array_literal(ids), pg::array_literal(statuses), pg::array_literal_nullable(errors));
    }
    tx.commit();
  });
  return out;
}

std::vector<bool> ReceiptStore::record_inbound(const std::vector<Inbound>& messages) {
  std::vector<bool> out(messages.size(), false);
  if (messages.empty()) return out;
  std::vector<std::string> ids, tenants, sessions, pmids, froms, texts, ats;
  for (const auto& m : messages) {
    ids.push_back(m.id());
    tenants.push_back(m.tenant_id);
    sessions.push_back(m.session);
    pmids.push_back(m.provider_message_id);
    froms.push_back(m.from);
    texts.push_back(m.text);
    ats.push_back(m.at);
  }
  pool_.run([&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    auto r = pg::exec_prepared(tx, R"SQL(
      INSERT INTO inbound_messages (id, tenant_id, session, provider_message_id, sender, body, received_at)
      SELECT i.* FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
        AS i(id, tenant_id, session, provider_message_id, sender, body, received_at)
      JOIN sessions s ON s.tenant_id = i.tenant_id AND s.name = i.session
      ON CONFLICT DO NOTHING RETURNING id::text)SQL",
                            pg::array_literal(ids), pg::array_literal(tenants), pg::array_literal(sessions),
                            pg::array_literal(pmids), pg::array_literal(froms), pg::array_literal(texts), pg::array_literal(ats));
    std::set<std::string> created;
    for (const auto& row : r) created.insert(row[0].as<std::string>());
    for (std::size_t i = 0; i < messages.size(); ++i) out[i] = created.count(ids[i]) > 0;
  });
  return out;
}

}  // namespace sb
