#include "legacy_api.hpp"

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb::sim {

void LegacyApi::routes() {
  server_.async_route("POST", "/v1/messages", [this](const http::Request& req, http::Responder respond) { send(req, respond); });
  server_.async_route("GET", "/v1/stats", [this](const http::Request&, http::Responder respond) {
    std::lock_guard lock(mu_);
    respond(reply(200, {{"accepted", accepted_}, {"duplicates", duplicates_}, {"sends", sends_}, {"failures", failures_},
                        {"dedupe", ctx_.config.dedupe}}));
  });
  server_.async_route("GET", "/v1/log", [this](const http::Request& req, http::Responder respond) {
    if (!req.has_param("tenant") || !req.has_param("session"))
      return respond(reply(400, {{"error", "query parameters 'tenant' and 'session' are required"}}));
    json out = {{"message_ids", json::array()}, {"arrivals", 0}, {"duplicates", json::array()}};
    {
      std::lock_guard lock(mu_);
      auto it = logs_.find({req.get_param_value("tenant"), req.get_param_value("session")});
      if (it != logs_.end()) out = {{"message_ids", it->second.first}, {"arrivals", it->second.arrivals}, {"duplicates", it->second.duplicates}};
    }
    respond(reply(200, out));
  });
  // What a provider adapter asks after a crash: did this message reach the provider, how often?
  server_.async_route("GET", R"(/v1/messages/([^/]+))", [this](const http::Request& req, http::Responder respond) {
    auto lookup = [this, respond, id = std::string(req.matches[1])] {
      std::lock_guard lock(mu_);
      auto it = by_key_.find(id);
      if (it == by_key_.end()) return respond(reply(404, {{"error", "no message '" + id + "'"}}));
      respond(reply(200, {{"provider_message_id", it->second.provider_message_id}, {"count", it->second.count}}));
    };
    // A hanging provider answers lookups late too (answered as of then).
    if (const int wait_ms = ctx_.hang_left_ms()) server_.after(std::chrono::milliseconds(wait_ms), std::move(lookup));
    else lookup();
  });
}

void LegacyApi::send(const http::Request& req, const http::Responder& respond) {
  std::string key = req.get_header_value("Idempotency-Key");
  if (key.empty()) return respond(reply(400, {{"error", "missing Idempotency-Key header"}}));
  std::string error;
  auto body = parse_object(req.body, &error);
  if (!body) return respond(reply(400, {{"error", error}}));
  for (const char* field : {"tenant", "session", "to", "text"})
    if (!string_field(*body, field)) return respond(reply(400, {{"error", std::string("'") + field + "' must be a string"}}));
  std::string tenant = (*body)["tenant"].get<std::string>();
  std::string session = (*body)["session"].get<std::string>();
  if (tenant.empty() || session.empty()) return respond(reply(400, {{"error", "'tenant' and 'session' must not be empty"}}));

  // Latency first (a slow failure is as realistic as a slow success): a timer, no thread held.
  const int delay_ms = send_latency_ms(ctx_.config) + ctx_.hang_left_ms();
  auto finish = [this, respond, key = std::move(key), tenant = std::move(tenant), session = std::move(session),
                 to = (*body)["to"].get<std::string>(), text = (*body)["text"].get<std::string>(), delay_ms] {
    respond(outcome(key, tenant, session, to, text, delay_ms));
  };
  if (delay_ms > 0) server_.after(std::chrono::milliseconds(delay_ms), std::move(finish));
  else finish();
}

http::Response LegacyApi::outcome(const std::string& key, const std::string& tenant, const std::string& session,
                                  const std::string& to, const std::string& text, int delay_ms) {
  if (simulated_failure(ctx_.config)) {
    {
      std::lock_guard lock(mu_);
      ++failures_;
    }
    // One line per message on the wire, flushed before the answer: the provider's own record,
  // which outlives the process (the chaos harness counts sends from it across restarts).
  log::info("simulator.send", {{"tenant", tenant}, {"session", session}, {"message_id", key},
                                  {"outcome", "simulated_failure"}, {"latency_ms", std::to_string(delay_ms)}});
    return reply(503, {{"error", "simulated failure"}});
  }
  std::string provider_id;
  bool repeat = false;
  bool mismatch = false;
  {
    std::lock_guard lock(mu_);
    auto& log = logs_[{tenant, session}];
    ++log.arrivals;
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      repeat = true;
      ++duplicates_;
      if (++it->second.count == 2) log.duplicates.push_back(key);
      mismatch = it->second.tenant != tenant || it->second.session != session;
      // Without dedupe a repeat is a second message on the wire, with its own provider id.
      provider_id = ctx_.config.dedupe ? it->second.provider_message_id : "sim_" + new_uuid_v7();
      if (!ctx_.config.dedupe) ++sends_;
    } else {
      provider_id = "sim_" + new_uuid_v7();
      by_key_.emplace(key, Sent{provider_id, tenant, session, 1});
      log.first.push_back(key);
      ++accepted_;
      ++sends_;
    }
  }
  ctx_.sends.record({"legacy", "session", session, to, text, provider_id, now_ms()});
  if (mismatch)
    log::warn("simulator.idempotency_key_reused",
              {{"tenant", tenant}, {"session", session}, {"message_id", key}, {"provider_message_id", provider_id}});
  if (repeat && !ctx_.config.dedupe)
    log::warn("simulator.sent_again", {{"tenant", tenant}, {"session", session}, {"message_id", key}, {"provider_message_id", provider_id}});
  // One line per message on the wire, flushed before the answer: the provider's own record,
  // which outlives the process (the chaos harness counts sends from it across restarts).
  log::info("simulator.send", {{"tenant", tenant},
                                {"session", session},
                                {"message_id", key},
                                {"provider_message_id", provider_id},
                                {"outcome", repeat ? "duplicate" : "accepted"},
                                {"latency_ms", std::to_string(delay_ms)}});
  // "duplicate" reports what the provider did: only a deduplicating provider recognises one.
  return reply(200, {{"provider_message_id", provider_id}, {"duplicate", repeat && ctx_.config.dedupe}});
}

}  // namespace sb::sim
