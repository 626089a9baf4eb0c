#pragma once
// Per-tenant quotas at intake, shared by every intake replica through Redis: requests per second
// (every authenticated request) and messages per UTC day (accepted sends, scheduled ones
// included). One Lua script per request checks both limits and counts the request only when
// both allow it, atomically (Redis runs a script alone), on Redis' clock — replicas' clocks
// don't matter. Fixed windows (the current second, the current UTC day) because that is what
// the RateLimit header can state exactly: remaining quota and seconds until the window resets.
//
// Limits: quotas.requests_per_s / quotas.messages_per_day, overridden per tenant by a
// tenant_quotas row (NULL: the default; 0: unlimited), re-read every quotas.override_refresh_ms.
// With no limit anywhere nothing touches Redis.
//
// Redis unreachable: requests pass (fail open) and are counted in redis_errors; quotas are a
// fairness tool, and refusing every tenant because Redis is down would be the bigger outage.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/pg.hpp"

namespace sb {

struct QuotaLimits {
  int requests_per_s = 0;    // 0: unlimited
  int messages_per_day = 0;  // 0: unlimited
  bool any() const { return requests_per_s > 0 || messages_per_day > 0; }
};

struct QuotaDecision {
  bool allowed = true;
  std::string exceeded;           // "requests" | "messages" when refused
  int retry_after_s = 0;          // refused: when the exceeded window resets
  // IETF httpapi ratelimit-headers (draft-12) values; empty when no limit applies.
  std::string policy_header;      // RateLimit-Policy: "requests";q=10;w=1, "messages";q=1000;w=86400
  std::string ratelimit_header;   // RateLimit: "requests";r=3;t=1, "messages";r=120;t=3600
};

// Builds the two header values from the limits, what remains and seconds to each reset.
QuotaDecision quota_headers(const QuotaLimits& limits, long long requests_left, long long reset_requests_s,
                            long long messages_left, long long reset_messages_s);

class TenantQuotas {
 public:
  // Starts the quota thread. pool must outlive this object.
  TenantQuotas(const Config& config, pg::Pool& pool);
  ~TenantQuotas();

  // Counts one request (and `messages` messages) of the tenant. done runs on the quota thread
  // (must not block long); immediately on the caller's thread when no limit applies.
  using Done = std::function<void(const QuotaDecision&)>;
  void check(const std::string& tenant, int messages, Done done);
  // The same, blocking the caller (for handlers already on the blocking pool).
  QuotaDecision check_now(const std::string& tenant, int messages);

  uint64_t refused() const { return refused_.load(); }
  uint64_t redis_errors() const { return redis_errors_.load(); }

 private:
  struct Request {
    std::string tenant;
    int messages;
    QuotaLimits limits;
    Done done;
  };
  QuotaLimits limits_for(const std::string& tenant);
  void refresh_overrides();
  void loop();

  const Config& config_;
  pg::Pool& pool_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  std::map<std::string, QuotaLimits> overrides_;  // tenant id → its limits (defaults filled in)
  std::atomic<bool> any_override_{false};
  std::atomic<uint64_t> refused_{0}, redis_errors_{0};
  bool stopping_ = false;
  std::thread thread_;  // last: it reaches everything above
};

}  // namespace sb
