#include "switchboard/core/redis.hpp"

#include <regex>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/metrics.hpp"

namespace sb {

namespace {
// sb_redis_errors_total{kind}: connect (no connection), io (a command or pipeline lost its
// connection or timed out), refused (a transient error reply: READONLY, LOADING, OOM… — a
// failover or restart), reply (any other error reply: a bug or a bad script).
prometheus::Counter& redis_error_counter(const char* kind) {
  static const metrics::CounterSet errors("sb_redis_errors_total",
                                          "Redis failures by kind: connect, io, refused (transient error reply), reply.", "kind",
                                          {"connect", "io", "refused", "reply"});
  return errors[kind];
}
}  // namespace

RedisClient::RedisClient(const RedisConfig& config) : config_(config) {
  redis_error_counter("connect");  // the family's series exist in every process with a client
  static const std::regex re(R"(^redis://([^:/]+)(?::(\d+))?(?:/(\d+))?/?$)");
  std::smatch m;
  if (!std::regex_match(config.url, m, re))
    throw ConfigError("redis.url '" + config.url + "' is not of the form redis://host:port[/db]");
  host_ = m[1];
  if (m[2].matched) port_ = std::stoi(m[2]);
  if (m[3].matched) db_ = std::stoi(m[3]);
}

void RedisClient::connect() {
  timeval tv{config_.timeout_ms / 1000, (config_.timeout_ms % 1000) * 1000};
  ctx_.reset(redisConnectWithTimeout(host_.c_str(), port_, tv));
  if (!ctx_ || ctx_->err) {
    const std::string why = ctx_ ? ctx_->errstr : "out of memory";
    ctx_.reset();
    redis_error_counter("connect").Increment();
    throw Unavailable("cannot connect to Redis at " + host_ + ":" + std::to_string(port_) + " (redis.url): " + why);
  }
  redisSetTimeout(ctx_.get(), tv);
  if (db_ != 0) command({"SELECT", std::to_string(db_)});
}

RedisReplyPtr RedisClient::command(const std::vector<std::string>& argv) {
  if (!ctx_) connect();
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  RedisReplyPtr reply(static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(args.size()), args.data(), lens.data())));
  if (!reply) {
    const std::string why = ctx_->errstr;
    ctx_.reset();  // hiredis contexts are unusable after an I/O error
    redis_error_counter("io").Increment();
    throw Unavailable("Redis command " + argv.front() + " failed: " + why);
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    const std::string msg(reply->str, reply->len);
    // States a failover or a restart passes through: retrying (on a fresh connection, which may
    // reach the new primary) helps. Anything else is a bug or a bad script: not retryable.
    for (const char* transient : {"READONLY", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "OOM", "CLUSTERDOWN"}) {
      if (msg.rfind(transient, 0) == 0) {
        ctx_.reset();
        redis_error_counter("refused").Increment();
        throw Unavailable("Redis " + argv.front() + " refused for now: " + msg + "; retrying");
      }
    }
    redis_error_counter("reply").Increment();
    throw Error(ErrorKind::Internal, "Redis " + argv.front() + " error: " + msg);
  }
  return reply;
}

std::vector<RedisReplyPtr> RedisClient::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (!ctx_) connect();
  for (const auto& argv : commands) {
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(args.size()), args.data(), lens.data()) != REDIS_OK) {
      ctx_.reset();
      redis_error_counter("io").Increment();
      throw Unavailable("Redis pipeline: cannot queue " + argv.front() + " (out of memory)");
    }
  }
  std::vector<RedisReplyPtr> replies;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || !raw) {
      const std::string why = ctx_->errstr;
      ctx_.reset();
      redis_error_counter("io").Increment();
      throw Unavailable("Redis pipeline of " + std::to_string(commands.size()) + " commands failed: " + why);
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  return replies;
}

bool RedisClient::ping() {
  try {
    auto r = command({"PING"});
    return r->type == REDIS_REPLY_STATUS;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace sb
