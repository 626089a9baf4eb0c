#include "switchboard/core/http_server.hpp"

#include <sys/socket.h>

#include "switchboard/core/errors.hpp"

namespace sb {

std::pair<std::string, int> parse_listen(const std::string& listen, const std::string& key) {
  const auto colon = listen.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    try {
      std::size_t used = 0;
      port = std::stoi(listen.substr(colon + 1), &used);
      if (used != listen.size() - colon - 1) port = -1;
    } catch (...) {
      port = -1;
    }
  }
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535)
    throw ConfigError("config key '" + key + "' = '" + listen + "': expected host:port, e.g. 127.0.0.1:8080");
  return {listen.substr(0, colon), port};
}

HttpServer::HttpServer() {
  set_tcp_nodelay(true);
  set_keep_alive_max_count(1000000);
  set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
}

int HttpServer::bind_listen(const std::string& listen, const std::string& key) {
  const auto [host, port] = parse_listen(listen, key);
  int bound = -1;
  if (port == 0) bound = bind_to_any_port(host.c_str());
  else if (bind_to_port(host.c_str(), port)) bound = port;
  if (bound <= 0) throw ConfigError("cannot listen on '" + listen + "' (config key '" + key + "'): address in use or not local");
  if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN);  // Linux lets listen() raise the backlog
  return bound;
}

}  // namespace sb
