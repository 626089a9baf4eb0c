#pragma once
// sb::http::Server — our event-driven HTTP/1.1 server (Boost.Beast over Asio, i.e. epoll).
//
// A few IO threads serve every connection; a connection costs a socket, a buffer and a pending
// read with a timer, never a thread and never a poll: 10,000 idle keep-alive connections cost
// memory, not CPU. Keep-alive, TCP_NODELAY, a listen backlog of SOMAXCONN, no SO_REUSEPORT
// (a second process must not silently share our port), a body limit (413), a header/idle
// timeout and a body read timeout (the connection is closed), and a graceful stop.
//
// Two kinds of handlers:
//   * async (`async_route`): runs on an IO thread and must not block; it answers through a
//     Responder, once, from any thread (a Kafka delivery callback, a writer thread…);
//   * blocking (`route`, `get`, `post`, …): runs on a small executor pool
//     (ServerOptions::blocking_threads), so a PostgreSQL call never stalls an IO thread.
// Routes are regular expressions matched against the whole path in registration order
// (`req.matches[1]` is the first group), like cpp-httplib's, so handlers port 1:1.
//
// Long-lived responses: an async handler may turn its Responder into a Stream instead of
// answering once — a Server-Sent Events body (`open_event_stream`: 200, chunked, written as
// messages are queued) or a WebSocket (`accept_websocket`: the 101 handshake, then one text
// frame per message). The connection then leaves the request/response cycle; stop() closes it.
//
// sb::HttpServer below is the previous cpp-httplib based server, kept only for tests' loopback
// receivers that have not been ported; production code uses sb::http::Server.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb {

// "host:port" → parts; throws ConfigError naming the config key.
std::pair<std::string, int> parse_listen(const std::string& listen, const std::string& key);

namespace http {

struct Request {
  std::string method;   // "GET", "POST", …
  std::string target;   // as sent: path plus query
  std::string path;     // decoded-free path (without the query)
  std::vector<std::string> matches;  // [0] the whole path, [1..] the route's groups
  std::vector<std::pair<std::string, std::string>> params;   // query, %-decoded
  std::vector<std::pair<std::string, std::string>> headers;  // as received
  std::string body;
  std::string remote_addr;
  // When the request's header had arrived (latency metrics time from here, so a slow body read
  // or a wait for a blocking-pool thread counts too).
  std::chrono::steady_clock::time_point received{};
  // The matched route's template: its pattern with each group written {} and escapes undone
  // ("/v1/sessions/{}/messages"). A bounded metrics label, unlike `path`. Empty: no route.
  std::string route;

  bool has_header(std::string_view name) const;  // case-insensitive
  std::string get_header_value(std::string_view name) const;  // "" when absent
  bool has_param(std::string_view name) const;
  std::string get_param_value(std::string_view name) const;  // first value, "" when absent
  bool is_websocket_upgrade() const;  // GET with Connection: upgrade and Upgrade: websocket
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  void set_header(std::string name, std::string value);
  void set_content(std::string content, std::string content_type);
  std::string get_header_value(std::string_view name) const;
};

class Server;
struct ResponderState;

// One long-lived response (an SSE body or a WebSocket) that the server writes as messages are
// queued. Every member may be called from any thread and never blocks: messages wait in the
// stream's queue and the connection's IO thread writes them in order, several per write when
// they piled up. Bounding the queue is the caller's choice (see queued()).
class Stream {
 public:
  // Shared and immutable: one event fanned out to thousands of streams is one string.
  using Message = std::shared_ptr<const std::string>;
  virtual ~Stream() = default;
  // Queues one message (SSE: bytes of the body as they are; WebSocket: one text frame).
  // Returns false once the stream is closed or closing.
  virtual bool send(Message message) = 0;
  // Keeps idle proxies from dropping the connection: an SSE comment line, a WebSocket ping.
  // Skipped while messages are waiting (they do the same job).
  virtual void heartbeat() = 0;
  // Drops what is still queued, says why and closes: SSE writes `last` as is and ends the
  // body; WebSocket sends a close frame with `ws_code` and `last` (cut to 123 bytes) as reason.
  // A client that does not read is disconnected after ServerOptions::write_timeout_ms anyway.
  virtual void close(std::string last, uint16_t ws_code = 1000) = 0;
  // Messages queued and not yet handed to the socket (excludes the write in progress).
  virtual std::size_t queued() const = 0;
  virtual bool closed() const = 0;
  // Runs once, on an IO thread, when the connection has ended (client gone, close(), stop()),
  // or at once if it already has. Set it before the first send().
  virtual void on_closed(std::function<void()> fn) = 0;
};

// Sends the response of one request. Call it exactly once, from any thread; later calls are
// ignored. If every copy is dropped without a call, the client gets a 500 (never a hang).
class Responder {
 public:
  explicit Responder(std::shared_ptr<ResponderState> state) : state_(std::move(state)) {}
  void operator()(Response response) const;
  // A header whatever answer follows will carry (unless it sets the same one itself): for
  // what is known before the answer is, e.g. rate-limit state. Any thread, before answering.
  void add_header(std::string name, std::string value) const;
  const Request& request() const;  // the request being answered (valid as long as the Responder)
  // Instead of one answer: status 200 with `head`'s headers (Content-Type text/event-stream
  // unless set) and a chunked body the returned stream writes to. Spends the Responder.
  std::shared_ptr<Stream> open_event_stream(Response head = {}) const;
  // Instead of one answer: completes the WebSocket handshake of this upgrade request (check
  // Request::is_websocket_upgrade first) and returns the socket as a stream of text frames.
  // Messages sent before the handshake finished wait for it. Spends the Responder.
  std::shared_ptr<Stream> accept_websocket() const;

 private:
  std::shared_ptr<ResponderState> state_;
};

using Handler = std::function<void(const Request&, Response&)>;
using AsyncHandler = std::function<void(const Request&, Responder)>;
// Fills `res` for an exception a handler threw.
using ExceptionHandler = std::function<void(const Request&, Response&, std::exception_ptr)>;
// Fills `res` (status already set) for errors the server answers itself: 404 no route,
// 413 body too large, 400 malformed request. Leave the body as is to keep one a handler wrote.
using ErrorHandler = std::function<void(const Request&, Response&)>;
// Called after each response is queued for writing (metrics, access logs).
using Logger = std::function<void(const Request&, const Response&)>;
// Runs on every answer (a handler's, an error the server raises itself, a preflight's) and on an
// SSE stream's head, before it is written: headers that follow from the request whatever
// answered it (CORS). Any thread; must not block.
using Decorator = std::function<void(const Request&, Response&)>;
// Runs before routing, on the IO thread, must not block: true answers the request with `res` and
// no route runs (a CORS preflight, which is no route's business).
using Preflight = std::function<bool(const Request&, Response&)>;

struct ServerOptions {
  int io_threads = 2;
  int blocking_threads = 4;
  std::size_t max_body_bytes = 1 << 20;
  int idle_timeout_ms = 30000;   // a keep-alive connection may wait this long for the next request
  int read_timeout_ms = 30000;   // a request's body must arrive within this once its header did
  int write_timeout_ms = 10000;
  int stop_grace_ms = 5000;      // stop() lets requests in progress finish for this long
};

class Server {
 public:
  explicit Server(ServerOptions options = {});
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Routes (register before listen). `method` is upper case; `pattern` an ECMAScript regex.
  void route(const std::string& method, const std::string& pattern, Handler handler);
  void async_route(const std::string& method, const std::string& pattern, AsyncHandler handler);
  void Get(const std::string& pattern, Handler h) { route("GET", pattern, std::move(h)); }
  void Post(const std::string& pattern, Handler h) { route("POST", pattern, std::move(h)); }
  void Patch(const std::string& pattern, Handler h) { route("PATCH", pattern, std::move(h)); }
  void Delete(const std::string& pattern, Handler h) { route("DELETE", pattern, std::move(h)); }
  void set_exception_handler(ExceptionHandler h) { exception_handler_ = std::move(h); }
  void set_error_handler(ErrorHandler h) { error_handler_ = std::move(h); }
  void set_logger(Logger h) { logger_ = std::move(h); }
  void set_decorator(Decorator h) { decorator_ = std::move(h); }  // before listen
  void set_preflight(Preflight h) { preflight_ = std::move(h); }  // before listen
  // The templates of the routes registered so far (Request::route's values), with their methods.
  std::vector<std::pair<std::string, std::string>> route_templates() const;

  // Binds "host:port" (port 0: any free port) and listens with backlog SOMAXCONN. Returns the
  // bound port; throws ConfigError naming `key` when the address is taken or not local.
  int bind_listen(const std::string& listen, const std::string& key);
  // Starts the IO threads and returns (after bind_listen).
  void start();
  // start() and block until stop().
  void run();
  // Stops accepting, lets requests in progress finish for up to stop_grace_ms (streams end at
  // once: SSE bodies are terminated, WebSockets get a 1001 close), closes every connection and
  // joins all threads. Idempotent; safe from any thread except an IO or
  // blocking-pool thread of this server (from there it only initiates the stop).
  void stop();
  bool running() const { return running_.load(); }
  int port() const { return port_; }

  // Runs fn on the blocking pool (for async handlers that need a blocking call). After stop()
  // fn is dropped, never run.
  void offload(std::function<void()> fn);
  // Runs fn on an IO thread after `delay` (a timer, no thread). Dropped after stop().
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  struct Impl;

 private:
  ServerOptions options_;
  ExceptionHandler exception_handler_;
  ErrorHandler error_handler_;
  Logger logger_;
  Decorator decorator_;
  Preflight preflight_;
  std::atomic<bool> running_{false};
  int port_ = 0;
  std::shared_ptr<Impl> impl_;
};

}  // namespace http

// Legacy: cpp-httplib's Server with production defaults, for tests' loopback receivers only.
// libcpp-httplib 0.11 listens with a backlog of 5, sets SO_REUSEPORT, leaves Nagle on and closes
// a connection every 5 requests; this class fixes all four. It runs a thread per connection.
class HttpServer : public httplib::Server {
 public:
  HttpServer();
  int bind_listen(const std::string& listen, const std::string& key);
};

}  // namespace sb
