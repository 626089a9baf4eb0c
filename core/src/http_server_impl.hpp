#pragma once
// Internals of sb::http::Server shared by the request/response sessions (http_server.cpp) and
// the long-lived stream connections (http_stream.cpp). Not installed.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "switchboard/core/http_server.hpp"
#include "switchboard/core/http_server_routes.hpp"

namespace sb::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// Anything stop() must end: a request/response session or a stream. Each registers itself in
// Server::Impl::connections for its lifetime.
class Connection {
 public:
  virtual ~Connection() = default;
  // stop() began: an idle session closes (a busy one after its response), a stream says
  // goodbye and closes. Runs on the connection's strand.
  virtual void wind_down() = 0;
  // The grace period is over: close the socket now. Runs on the connection's strand.
  virtual void close() = 0;
  virtual asio::any_io_executor executor() = 0;
};

// What runs for a route: one of the two is set. Indexed like the RouteTable's routes.
struct Route {
  Handler handler;
  AsyncHandler async;
};

struct Server::Impl {
  Server& owner;
  ServerOptions options;
  RouteTable table;           // method + path → route index (segment matcher; regex only for odd patterns)
  std::vector<Route> routes;  // by that index

  // Declared before the io_context: connections reach these while it destroys their handlers.
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
  std::vector<std::weak_ptr<asio::steady_timer>> timers;
  std::atomic<bool> stopping{false};  // no new requests; idle connections close
  std::atomic<bool> stopped{false};   // responses and offloaded work are dropped
  bool stop_requested = false;
  bool shut_down = false;
  std::mutex shutdown_mu;

  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  asio::thread_pool pool;
  std::vector<std::thread> threads;

  Impl(Server& s, ServerOptions o)
      : owner(s),
        options(o),
        ioc(std::max(1, o.io_threads)),
        acceptor(asio::make_strand(ioc)),
        pool(static_cast<std::size_t>(std::max(1, o.blocking_threads))) {}

  void accept();
  void request_stop();
  void shutdown();
  std::vector<std::shared_ptr<Connection>> live_connections();
  void enroll(Connection* raw, std::weak_ptr<Connection> weak);
  void leave(Connection* raw);
  void finish(const Request& req, Response& res);
  const ExceptionHandler& owner_exception_handler() const { return owner.exception_handler_; }
  void decorate(const Request& req, Response& res);  // the owner's Decorator, if any
  bool preflight(const Request& req, Response& res);  // the owner's Preflight, if any
};

// What a session hands to a stream when it stops being a request/response connection: the
// socket, bytes already read past the request, and the request itself (the WebSocket
// handshake answers it).
struct HandOver {
  beast::tcp_stream socket;
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> request;
};

// A stream whose socket arrives later (attach, on the stream's strand); messages queued before
// then wait. Made by the Responder, fed by the session it came from.
class StreamConnection : public Stream, public Connection {
 public:
  using Connection::close;
  using Stream::close;
  virtual void attach(HandOver&& from) = 0;
};

std::shared_ptr<StreamConnection> make_event_stream(std::shared_ptr<Server::Impl> impl, asio::any_io_executor strand,
                                                    Response head, unsigned http_version);
std::shared_ptr<StreamConnection> make_websocket_stream(std::shared_ptr<Server::Impl> impl,
                                                        asio::any_io_executor strand);

}  // namespace sb::http
