#include "switchboard/producers/tenant_quotas.hpp"

#include <chrono>
#include <future>

#include "switchboard/core/log.hpp"
#include "switchboard/core/redis.hpp"

namespace sb {
namespace {

// KEYS[1]: the tenant's key prefix. ARGV: requests/s limit, messages/day limit (0: none),
// messages this request adds. Returns {allowed, exceeded (0 none, 1 requests, 2 messages),
// requests left, ms until the second ends, messages left, s until the UTC day ends}.
const char* kScript = R"LUA(
local t = redis.call('TIME')
local sec = tonumber(t[1])
local ms_left = 1000 - math.floor(tonumber(t[2]) / 1000)
local day_left = 86400 - (sec % 86400)
local rps, mpd, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rkey = KEYS[1] .. ':r:' .. sec
local dkey = KEYS[1] .. ':d:' .. math.floor(sec / 86400)
local used_r, used_d = 0, 0
if rps > 0 then used_r = tonumber(redis.call('GET', rkey) or '0') end
if mpd > 0 then used_d = tonumber(redis.call('GET', dkey) or '0') end
if rps > 0 and used_r + 1 > rps then
  return {0, 1, 0, ms_left, math.max(mpd - used_d, 0), day_left}
end
if mpd > 0 and n > 0 and used_d + n > mpd then
  return {0, 2, math.max(rps - used_r, 0), ms_left, math.max(mpd - used_d, 0), day_left}
end
if rps > 0 then
  redis.call('INCR', rkey)
  redis.call('PEXPIRE', rkey, 2000)
  used_r = used_r + 1
end
if mpd > 0 and n > 0 then
  redis.call('INCRBY', dkey, n)
  redis.call('EXPIRE', dkey, 90000)
  used_d = used_d + n
end
return {1, 0, math.max(rps - used_r, 0), ms_left, math.max(mpd - used_d, 0), day_left}
)LUA";

}  // namespace

QuotaDecision quota_headers(const QuotaLimits& l, long long requests_left, long long reset_requests_s, long long messages_left,
                            long long reset_messages_s) {
  QuotaDecision d;
  auto add = [](std::string& h, const std::string& item) { h += (h.empty() ? "" : ", ") + item; };
  if (l.requests_per_s > 0) {
    add(d.policy_header, "\"requests\";q=" + std::to_string(l.requests_per_s) + ";w=1");
    add(d.ratelimit_header, "\"requests\";r=" + std::to_string(requests_left) + ";t=" + std::to_string(reset_requests_s));
  }
  if (l.messages_per_day > 0) {
    add(d.policy_header, "\"messages\";q=" + std::to_string(l.messages_per_day) + ";w=86400");
    add(d.ratelimit_header, "\"messages\";r=" + std::to_string(messages_left) + ";t=" + std::to_string(reset_messages_s));
  }
  return d;
}

TenantQuotas::TenantQuotas(const Config& config, pg::Pool& pool) : config_(config), pool_(pool), thread_([this] { loop(); }) {}

TenantQuotas::~TenantQuotas() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

QuotaLimits TenantQuotas::limits_for(const std::string& tenant) {
  QuotaLimits l{config_.quotas.requests_per_s, config_.quotas.messages_per_day};
  if (!any_override_) return l;
  std::lock_guard lock(mu_);
  if (auto it = overrides_.find(tenant); it != overrides_.end()) l = it->second;
  return l;
}

void TenantQuotas::check(const std::string& tenant, int messages, Done done) {
  const auto limits = limits_for(tenant);
  if (!limits.any()) return done(QuotaDecision{});
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back({tenant, messages, limits, std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(QuotaDecision{});
}

QuotaDecision TenantQuotas::check_now(const std::string& tenant, int messages) {
  auto p = std::make_shared<std::promise<QuotaDecision>>();
  auto f = p->get_future();
  check(tenant, messages, [p](const QuotaDecision& d) { p->set_value(d); });
  if (f.wait_for(std::chrono::milliseconds(config_.redis.timeout_ms * 2 + 1000)) != std::future_status::ready) return {};
  return f.get();
}

void TenantQuotas::refresh_overrides() {
  try {
    auto rows = pool_.run([](pqxx::connection& c) {
      pqxx::nontransaction tx(c);
      return tx.exec("SELECT tenant_id::text, requests_per_s, messages_per_day FROM tenant_quotas");
    });
    std::map<std::string, QuotaLimits> fresh;
    for (const auto& r : rows) {
      QuotaLimits l{config_.quotas.requests_per_s, config_.quotas.messages_per_day};
      if (!r[1].is_null()) l.requests_per_s = r[1].as<int>();
      if (!r[2].is_null()) l.messages_per_day = r[2].as<int>();
      fresh[r[0].as<std::string>()] = l;
    }
    std::lock_guard lock(mu_);
    overrides_.swap(fresh);
    any_override_ = !overrides_.empty();
  } catch (const std::exception& e) {
    log::warn("intake.quota_overrides_unreadable", {{"detail", e.what()}});  // the last ones read stay
  }
}

void TenantQuotas::loop() {
  RedisClient redis(config_.redis);
  std::chrono::steady_clock::time_point redis_down_until{};
  auto deliver = [](Request& r, const QuotaDecision& d) {
    try {
      r.done(d);
    } catch (const std::exception& e) {
      log::error("intake.quota_callback_failed", {{"tenant", r.tenant}, {"detail", e.what()}});
    }
  };
  const auto refresh_every = std::chrono::milliseconds(config_.quotas.override_refresh_ms);
  auto next_refresh = std::chrono::steady_clock::now();
  for (;;) {
    if (std::chrono::steady_clock::now() >= next_refresh) {
      refresh_overrides();
      next_refresh = std::chrono::steady_clock::now() + refresh_every;
    }
    std::deque<Request> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_refresh, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      batch.swap(queue_);
    }
    for (auto& r : batch) {
      QuotaDecision d;
      // After a failure Redis is left alone for a second (requests pass): a Redis that hangs
      // must not make every request wait its timeout in this one queue.
      if (std::chrono::steady_clock::now() < redis_down_until) {
        ++redis_errors_;
        deliver(r, d);
        continue;
      }
      try {
        auto reply = redis.command({"EVAL", kScript, "1", "sb:quota:" + r.tenant, std::to_string(r.limits.requests_per_s),
                                    std::to_string(r.limits.messages_per_day), std::to_string(r.messages)});
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 6) throw Error(ErrorKind::Internal, "quota script: unexpected reply");
        auto at = [&](std::size_t i) { return reply->element[i]->integer; };
        const long long reset_requests_s = (at(3) + 999) / 1000;
        d = quota_headers(r.limits, at(2), reset_requests_s, at(4), at(5));
        d.allowed = at(0) == 1;
        if (!d.allowed) {
          ++refused_;
          d.exceeded = at(1) == 1 ? "requests" : "messages";
          d.retry_after_s = static_cast<int>(at(1) == 1 ? reset_requests_s : at(5));
        }
      } catch (const std::exception& e) {
        if (++redis_errors_ % 100 == 1) log::warn("intake.quota_unavailable", {{"tenant", r.tenant}, {"detail", e.what()}});
        d = QuotaDecision{};  // fail open
        redis_down_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      }
      deliver(r, d);
    }
  }
}

}  // namespace sb
