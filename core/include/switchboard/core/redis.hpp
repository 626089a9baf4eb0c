#pragma once
// Redis over hiredis: one owned redisContext per client, reconnect on failure, deadlines on
// every call. Not thread-safe: one client per thread.
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"

namespace sb {

struct RedisContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

class RedisClient {
 public:
  // url: redis://host:port[/db]. Connects lazily; throws ConfigError for a malformed URL.
  explicit RedisClient(const RedisConfig& config);
  // Runs one command; throws Unavailable when Redis can't be reached (the connection is dropped
  // and re-made on the next call), Error(Internal) for an error reply.
  RedisReplyPtr command(const std::vector<std::string>& argv);
  // Several commands in one round trip; one reply each, in order. Error replies are handed back
  // as they are (REDIS_REPLY_ERROR: the caller judges them); throws Unavailable on I/O failure.
  std::vector<RedisReplyPtr> pipeline(const std::vector<std::vector<std::string>>& commands);
  bool ping();

 private:
  void connect();
  RedisConfig config_;
  std::string host_;
  int port_ = 6379;
  int db_ = 0;
  std::unique_ptr<redisContext, RedisContextDeleter> ctx_;
};

}  // namespace sb
