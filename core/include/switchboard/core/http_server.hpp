#pragma once
// cpp-httplib's Server with production defaults. libcpp-httplib 0.11 as packaged listens with a
// backlog of 5 (a burst of new connections loses SYNs and stalls a second), sets SO_REUSEPORT
// (a second process could bind our port and silently share traffic), leaves Nagle on (headers
// and body are separate writes: +40 ms per keep-alive response) and closes a connection every 5
// requests. This class fixes all four.
#include <httplib.h>

#include <string>
#include <utility>

namespace sb {

// "host:port" → parts; throws ConfigError naming the config key.
std::pair<std::string, int> parse_listen(const std::string& listen, const std::string& key);

class HttpServer : public httplib::Server {
 public:
  HttpServer();
  // Binds (port 0: any free port) and raises the backlog. Returns the bound port; throws
  // ConfigError naming `key` when the address is taken or not local. Then call listen_after_bind().
  int bind_listen(const std::string& listen, const std::string& key);
};

}  // namespace sb
