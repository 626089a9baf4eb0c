#include "switchboard/core/http_server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <boost/beast/websocket/rfc6455.hpp>
#include <strings.h>

#include "http_server_impl.hpp"

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/url_query.hpp"

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

namespace http {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Where a thread belongs, so stop() called from our own handler doesn't wait for itself.
thread_local const void* current_server = nullptr;

Response error_response(int status, std::string body = {}) {
  Response r;
  r.status = status;
  if (!body.empty()) r.set_content(std::move(body), "application/json");
  return r;
}

}  // namespace

bool Request::has_header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return true;
  return false;
}
std::string Request::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}
bool Request::has_param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return true;
  return false;
}
std::string Request::get_param_value(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return {};
}

void Response::set_header(std::string name, std::string value) {
  for (auto& [k, v] : headers)
    if (iequals(k, name)) {
      v = std::move(value);
      return;
    }
  headers.emplace_back(std::move(name), std::move(value));
}
void Response::set_content(std::string content, std::string content_type) {
  body = std::move(content);
  set_header("Content-Type", std::move(content_type));
}
std::string Response::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

class Session;

struct ResponderState {
  std::shared_ptr<Session> session;
  Request request;
  std::atomic<bool> done{false};
  std::mutex extra_mu;
  std::vector<std::pair<std::string, std::string>> extra_headers;  // Responder::add_header
  ResponderState(std::shared_ptr<Session> s, Request r) : session(std::move(s)), request(std::move(r)) {}
  ~ResponderState();
  void respond(Response res);
  std::shared_ptr<Stream> stream(std::shared_ptr<StreamConnection> conn, Response& logged);
};

// One connection: read a request, run its handler, write the response, repeat (keep-alive).
// Requests on a connection are answered in order, one at a time; everything below runs on the
// connection's strand except Responder calls, which post onto it.
class Session : public Connection, public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Server::Impl> impl, tcp::socket socket) : impl_(std::move(impl)), stream_(std::move(socket)) {}
  ~Session() override { impl_->leave(this); }

  void start() {
    impl_->enroll(this, weak_from_this());
    beast::error_code ec;
    stream_.socket().set_option(tcp::no_delay(true), ec);  // headers and body in one segment, no 40 ms stall
    remote_ = stream_.socket().remote_endpoint(ec).address().to_string(ec);
    read_header();
  }

  // Posted by stop(): an idle connection closes now, a busy one after its response.
  void wind_down() override {
    if (busy_) close_after_ = true;
    else close();
  }
  void close() override {
    if (handed_over_) return;  // the socket belongs to a stream now
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }
  asio::any_io_executor executor() override { return strand_; }

  Server::Impl& impl() { return *impl_; }
  const std::shared_ptr<Server::Impl>& impl_ptr() const { return impl_; }
  unsigned http_version() const { return version_ ? version_ : 11; }
  void post_response(Response res) {
    if (impl_->stopped) return;
    asio::post(strand_, [self = shared_from_this(), res = std::move(res)]() mutable {
      self->write(std::move(res));
    });
  }
  // The request's answer is a stream: the socket, what was read past the request and the
  // request itself move to it, and this session ends (its handlers hold the last references).
  void hand_over(std::shared_ptr<StreamConnection> conn) {
    asio::post(strand_, [self = shared_from_this(), conn = std::move(conn)] {
      if (self->handed_over_ || !self->parser_) return;
      self->handed_over_ = true;
      conn->attach(HandOver{std::move(self->stream_), std::move(self->buffer_), self->parser_->release()});
    });
  }

 private:
  void read_header() {
    if (impl_->stopping) return close();
    parser_.emplace();
    received_ = {};  // set when the next header has arrived
    parser_->body_limit(impl_->options.max_body_bytes);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(std::chrono::milliseconds(impl_->options.idle_timeout_ms));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return read_failed(ec);
    busy_ = true;  // from here on an answer is owed
    received_ = std::chrono::steady_clock::now();
    auto& msg = parser_->get();
    if (iequals(std::string_view(msg[bhttp::field::expect].data(), msg[bhttp::field::expect].size()), "100-continue")) {
      // curl sends Expect for large bodies and waits up to a second unless told to go on.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue), [self = shared_from_this()](beast::error_code e, std::size_t) {
        if (e) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return dispatch();
    stream_.expires_after(std::chrono::milliseconds(impl_->options.read_timeout_ms));
    bhttp::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->read_failed(ec);
      self->dispatch();
    });
  }

  void read_failed(beast::error_code ec) {
    // Oversized body: answer 413 and close (the rest of the body is not read).
    if (ec == bhttp::error::body_limit) {
      busy_ = true;
      close_after_ = true;
      answer_error(413);
      return;
    }
    // A malformed request gets a 400; EOF, timeouts, resets and stop() get nothing.
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() && ec != bhttp::error::end_of_stream &&
        ec != bhttp::error::partial_message && parser_ && parser_->got_some()) {
      busy_ = true;
      close_after_ = true;
      answer_error(400);
      return;
    }
    close();
  }

  Request make_request() {
    auto& msg = parser_->get();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    const std::string_view target(req.target);
    const auto q = target.find('?');
    req.path = url_decode(target.substr(0, q), false);
    if (q != std::string_view::npos) parse_query(target.substr(q + 1), req.params);
    req.headers.reserve(8);
    for (const auto& f : msg) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.body = std::move(msg.body());
    req.remote_addr = remote_;
    req.received = received_;
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    return req;
  }

  void answer_error(int status) {
    Request req;
    req.received = received_ != std::chrono::steady_clock::time_point{} ? received_ : std::chrono::steady_clock::now();
    if (parser_) {
      auto& msg = parser_->get();
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      req.path = url_decode(req.target.substr(0, req.target.find('?')), false);
      version_ = msg.version() ? msg.version() : 11;
    }
    keep_alive_ = false;
    auto state = std::make_shared<ResponderState>(shared_from_this(), std::move(req));
    state->respond(error_response(status));
  }

  void dispatch();

  void write(Response res) {
    auto out = std::make_shared<bhttp::response<bhttp::string_body>>();
    out->version(version_ ? version_ : 11);
    out->result(static_cast<unsigned>(res.status));
    for (auto& [k, v] : res.headers) out->set(k, v);
    out->body() = std::move(res.body);
    const bool keep = keep_alive_ && !close_after_ && !impl_->stopping;
    out->keep_alive(keep);
    out->prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(impl_->options.write_timeout_ms));
    bhttp::async_write(stream_, *out, [self = shared_from_this(), out, keep](beast::error_code ec, std::size_t) {
      if (ec || !keep) return self->close();
      self->busy_ = false;
      self->parser_.reset();
      self->read_header();
    });
  }

  std::shared_ptr<Server::Impl> impl_;
  beast::tcp_stream stream_;
  asio::any_io_executor strand_ = stream_.get_executor();  // kept: stream_ may move to a stream
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string remote_;
  bool busy_ = false;
  bool close_after_ = false;
  bool keep_alive_ = true;
  bool handed_over_ = false;
  unsigned version_ = 11;
  std::chrono::steady_clock::time_point received_{};  // the current request's header arrived
};


ResponderState::~ResponderState() {
  // Every copy dropped without an answer: the client must not hang, and the 500 is a defect of
  // the route's handler, so it is logged (the chaos harness once saw one with no line to say why).
  if (!done.load()) {
    log::error("http.unanswered", {{"method", request.method},
                                   {"route", request.route.empty() ? request.path : request.route},
                                   {"detail", "the handler dropped its responder without answering; answered 500"}});
    respond(error_response(500, R"({"error":"internal error"})"));
  }
}

void ResponderState::respond(Response res) {
  if (done.exchange(true)) return;
  {
    std::lock_guard lock(extra_mu);
    for (auto& [k, v] : extra_headers)
      if (res.get_header_value(k).empty()) res.set_header(std::move(k), std::move(v));
  }
  session->impl().decorate(request, res);
  session->impl().finish(request, res);
  session->post_response(std::move(res));
}

std::shared_ptr<Stream> ResponderState::stream(std::shared_ptr<StreamConnection> conn, Response& logged) {
  if (done.exchange(true)) return nullptr;
  session->impl().finish(request, logged);
  if (session->impl().stopped) {
    conn->close();
    return conn;
  }
  session->hand_over(conn);
  return conn;
}

void Responder::operator()(Response response) const { state_->respond(std::move(response)); }
void Responder::add_header(std::string name, std::string value) const {
  std::lock_guard lock(state_->extra_mu);
  state_->extra_headers.emplace_back(std::move(name), std::move(value));
}
const Request& Responder::request() const { return state_->request; }

std::shared_ptr<Stream> Responder::open_event_stream(Response head) const {
  auto& session = *state_->session;
  if (head.get_header_value("Content-Type").empty()) head.set_header("Content-Type", "text/event-stream");
  head.status = 200;
  session.impl().decorate(state_->request, head);
  auto conn = make_event_stream(session.impl_ptr(), session.executor(), head, session.http_version());
  return state_->stream(std::move(conn), head);
}

std::shared_ptr<Stream> Responder::accept_websocket() const {
  auto& session = *state_->session;
  Response logged;
  logged.status = 101;
  return state_->stream(make_websocket_stream(session.impl_ptr(), session.executor()), logged);
}

bool Request::is_websocket_upgrade() const {
  if (method != "GET" || !iequals(get_header_value("Upgrade"), "websocket")) return false;
  const auto connection = get_header_value("Connection");  // "Upgrade" or "keep-alive, Upgrade"
  for (std::size_t i = 0; i + 7 <= connection.size(); ++i)
    if (iequals(std::string_view(connection).substr(i, 7), "upgrade")) return true;
  return false;
}

void Server::Impl::decorate(const Request& req, Response& res) {
  if (!owner.decorator_) return;
  try {
    owner.decorator_(req, res);
  } catch (const std::exception& e) {
    log::error("http.decorator_failed", {{"path", req.path}, {"detail", e.what()}});
  }
}

bool Server::Impl::preflight(const Request& req, Response& res) {
  if (!owner.preflight_) return false;
  try {
    return owner.preflight_(req, res);
  } catch (const std::exception& e) {
    log::error("http.preflight_failed", {{"path", req.path}, {"detail", e.what()}});
    return false;
  }
}

void Server::Impl::finish(const Request& req, Response& res) {
  try {
    if (res.status >= 400 && res.body.empty() && owner.error_handler_) owner.error_handler_(req, res);
    if (owner.logger_) owner.logger_(req, res);
  } catch (const std::exception& e) {
    log::error("http.finish_failed", {{"path", req.path}, {"detail", e.what()}});
  }
}

namespace {

// A handler threw: the exception handler (or a plain 500) decides the answer.
void answer_exception(Server::Impl& impl, const std::shared_ptr<ResponderState>& state, std::exception_ptr ep) {
  Response res;
  res.status = 500;
  try {
    if (impl.owner_exception_handler()) impl.owner_exception_handler()(state->request, res, ep);
    else res.set_content(R"({"error":"internal error"})", "application/json");
  } catch (const std::exception& e) {
    log::error("http.exception_handler_failed", {{"path", state->request.path}, {"detail", e.what()}});
  }
  state->respond(std::move(res));
}

}  // namespace

void Session::dispatch() {
  Request req = make_request();
  if (Response res; impl_->preflight(req, res))
    return std::make_shared<ResponderState>(shared_from_this(), std::move(req))->respond(std::move(res));
  const Route* route = nullptr;
  if (const auto index = impl_->table.find(req.method, req.path, req.matches)) {
    req.route = impl_->table.pattern(*index).label();
    route = &impl_->routes[*index];
  }
  auto state = std::make_shared<ResponderState>(shared_from_this(), std::move(req));
  if (!route) return state->respond(error_response(404));
  if (route->async) {
    try {
      route->async(state->request, Responder(state));
    } catch (...) {
      answer_exception(*impl_, state, std::current_exception());
    }
    return;
  }
  Server::Impl* impl = impl_.get();
  asio::post(impl_->pool, [impl, route, state] {
    current_server = impl;
    if (impl->stopped) return;
    Response res;
    try {
      route->handler(state->request, res);
    } catch (...) {
      return answer_exception(*impl, state, std::current_exception());
    }
    state->respond(std::move(res));
  });
}

void Server::Impl::accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (stopping) return;
    if (!ec) {
      // The impl outlives every session: each holds a reference.
      std::make_shared<Session>(owner.impl_, std::move(socket))->start();
    } else if (ec != asio::error::operation_aborted) {
      // EMFILE and friends: keep accepting (a busy loop is avoided by the error being transient).
      log::warn("http.accept_failed", {{"detail", ec.message()}});
    }
    accept();
  });
}

void Server::Impl::request_stop() {
  {
    std::lock_guard lock(mu);
    if (stop_requested) return;
    stop_requested = true;
    stopping = true;
    cv.notify_all();
  }
  asio::post(acceptor.get_executor(), [this] {
    beast::error_code ec;
    acceptor.close(ec);
  });
  // Locked copies first: the last reference to a connection may drop here, and its destructor locks mu.
  for (auto& c : live_connections()) asio::post(c->executor(), [c] { c->wind_down(); });
}

std::vector<std::shared_ptr<Connection>> Server::Impl::live_connections() {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard lock(mu);
  out.reserve(connections.size());
  for (auto& [raw, weak] : connections)
    if (auto c = weak.lock()) out.push_back(std::move(c));
  return out;
}

void Server::Impl::enroll(Connection* raw, std::weak_ptr<Connection> weak) {
  std::lock_guard lock(mu);
  connections.emplace(raw, std::move(weak));
}

void Server::Impl::leave(Connection* raw) {
  std::lock_guard lock(mu);
  connections.erase(raw);
  cv.notify_all();
}

void Server::Impl::shutdown() {
  std::lock_guard once(shutdown_mu);
  if (shut_down) return;
  shut_down = true;
  std::vector<std::weak_ptr<asio::steady_timer>> pending_timers;
  {
    // Requests in progress finish (their connections then close) for up to the grace period.
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(options.stop_grace_ms), [&] { return connections.empty(); });
    stopped = true;
    pending_timers.swap(timers);
  }
  for (auto& c : live_connections()) asio::post(c->executor(), [c] { c->close(); });
  for (auto& weak : pending_timers)
    if (auto t = weak.lock()) asio::post(t->get_executor(), [t] { t->cancel(); });
  pool.join();
  work.reset();
  // Every operation was cancelled or closed: run() returns once their handlers have run.
  for (auto& t : threads)
    if (t.joinable()) t.join();
  threads.clear();
}

Server::Server(ServerOptions options) : options_(options), impl_(std::make_shared<Impl>(*this, options)) {}

Server::~Server() { stop(); }

void Server::route(const std::string& method, const std::string& pattern, Handler handler) {
  impl_->table.add(method, pattern);
  impl_->routes.push_back({std::move(handler), {}});
}

void Server::async_route(const std::string& method, const std::string& pattern, AsyncHandler handler) {
  impl_->table.add(method, pattern);
  impl_->routes.push_back({{}, std::move(handler)});
}

std::vector<std::pair<std::string, std::string>> Server::route_templates() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i < impl_->table.size(); ++i) out.emplace_back(impl_->table.method(i), impl_->table.pattern(i).label());
  return out;
}

int Server::bind_listen(const std::string& listen, const std::string& key) {
  const auto [host, port] = parse_listen(listen, key);
  auto& acc = impl_->acceptor;
  beast::error_code ec;
  const auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) throw ConfigError("cannot listen on '" + listen + "' (config key '" + key + "'): '" + host + "' is not an IP address");
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);  // restart while old sockets sit in TIME_WAIT
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(SOMAXCONN, ec);  // a burst of connects must not lose SYNs (a second's stall each)
  if (ec) {
    acc.close(ec);
    throw ConfigError("cannot listen on '" + listen + "' (config key '" + key + "'): address in use or not local");
  }
  port_ = acc.local_endpoint(ec).port();
  return port_;
}

void Server::start() {
  if (!impl_->acceptor.is_open()) throw ConfigError("http server: bind_listen() before start()");
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stop_requested) return;  // stopped before it started: stays stopped
  }
  if (running_.exchange(true)) return;
  impl_->work.emplace(impl_->ioc.get_executor());
  asio::post(impl_->acceptor.get_executor(), [impl = impl_.get()] { impl->accept(); });
  for (int i = 0; i < std::max(1, options_.io_threads); ++i)
    impl_->threads.emplace_back([impl = impl_.get()] {
      current_server = impl;
      for (;;) {
        try {
          impl->ioc.run();
          return;
        } catch (const std::exception& e) {
          log::error("http.io_thread_error", {{"detail", e.what()}});
        }
      }
    });
}

void Server::run() {
  start();
  {
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait(lock, [&] { return impl_->stop_requested; });
  }
  impl_->shutdown();
  running_ = false;
}

void Server::stop() {
  impl_->request_stop();
  if (current_server == impl_.get()) return;  // our own thread: run()'s caller finishes the stop
  if (!impl_->threads.empty() || running_) impl_->shutdown();
  running_ = false;
}

void Server::offload(std::function<void()> fn) {
  if (impl_->stopped) return;
  asio::post(impl_->pool, [impl = impl_.get(), fn = std::move(fn)] {
    current_server = impl;
    if (!impl->stopped) fn();
  });
}

void Server::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (impl_->stopped) return;
  auto timer = std::make_shared<asio::steady_timer>(impl_->ioc, delay);
  {
    std::lock_guard lock(impl_->mu);
    // Forget fired timers now and then so the list stays as long as what is pending.
    if (impl_->timers.size() > 1024)
      std::erase_if(impl_->timers, [](const auto& w) { return w.expired(); });
    impl_->timers.push_back(timer);
  }
  timer->async_wait([timer, fn = std::move(fn)](beast::error_code ec) {
    if (!ec) fn();
  });
}

// ---- route table (switchboard/core/http_server_routes.hpp) ----

namespace {

constexpr std::string_view kRouteRegexMeta = ".[]()*+?{}|^$\\";

// "/v1/sessions/([^/]+)/messages" → "/v1/sessions/{}/messages": each top-level group becomes
// {}, escapes are undone. Routes are ours (registered in code), so this needs no full parser.
std::string route_pattern_template(const std::string& pattern) {
  std::string out;
  int depth = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char ch = pattern[i];
    if (ch == '\\' && i + 1 < pattern.size()) {
      if (depth == 0) out += pattern[i + 1];
      ++i;
    } else if (ch == '(') {
      if (depth++ == 0) out += "{}";
    } else if (ch == ')') {
      --depth;
    } else if (depth == 0 && ch != '^' && ch != '$') {
      out += ch;
    }
  }
  return out;
}

// A regex fragment that only matches itself, as the text it matches: `v21\.0` → "v21.0".
// nullopt when it has any operator (an escape of a letter or digit is a class like \d: not
// literal; an escaped punctuation character is that character, as in ECMAScript).
std::optional<std::string> route_literal(std::string_view fragment) {
  std::string out;
  for (std::size_t i = 0; i < fragment.size(); ++i) {
    const char ch = fragment[i];
    if (ch == '\\') {
      if (i + 1 >= fragment.size()) return std::nullopt;
      const char next = fragment[++i];
      const bool alnum = (next >= '0' && next <= '9') || (next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z');
      if (alnum) return std::nullopt;
      out += next;
    } else if (kRouteRegexMeta.find(ch) != std::string_view::npos) {
      return std::nullopt;
    } else {
      out += ch;
    }
  }
  return out;
}

// The pattern's segments when it starts with '/' and splits at its top-level '/' into pieces
// that are each a literal, `([^/]+)` or `(lit|lit|…)`; nullopt otherwise (the regex is kept).
template <typename Segment>
std::optional<std::vector<Segment>> route_segments(const std::string& pattern) {
  if (pattern.empty() || pattern.front() != '/') return std::nullopt;
  // Split at '/' outside groups and brackets (`[^/]` holds one).
  std::vector<std::string_view> pieces;
  const std::string_view p(pattern);
  int depth = 0;
  bool bracket = false;
  std::size_t start = 1;
  for (std::size_t i = 1; i <= p.size(); ++i) {
    if (i == p.size() || (p[i] == '/' && depth == 0 && !bracket)) {
      pieces.push_back(p.substr(start, i - start));
      start = i + 1;
      continue;
    }
    const char ch = p[i];
    if (ch == '\\') {
      if (i + 1 >= p.size()) return std::nullopt;  // a trailing lone backslash: not ours to guess
      ++i;
    } else if (bracket) bracket = ch != ']';
    else if (ch == '[') bracket = true;
    else if (ch == '(') ++depth;
    else if (ch == ')') --depth;
  }
  if (depth != 0 || bracket) return std::nullopt;
  std::vector<Segment> out;
  for (const auto piece : pieces) {
    Segment s;
    if (piece == "([^/]+)") {
      s.kind = Segment::Kind::Any;
    } else if (piece.size() > 2 && piece.front() == '(' && piece.back() == ')') {
      // (start|stop|restart): one of these literals, captured.
      s.kind = Segment::Kind::OneOf;
      const auto inner = piece.substr(1, piece.size() - 2);
      std::size_t from = 0;
      for (;;) {
        const auto bar = inner.find('|', from);
        auto choice = route_literal(inner.substr(from, bar == std::string_view::npos ? std::string_view::npos : bar - from));
        // A choice spanning segments ("a/b") or matching an empty one is left to the regex.
        if (!choice || choice->empty() || choice->find('/') != std::string::npos) return std::nullopt;
        s.choices.push_back(std::move(*choice));
        if (bar == std::string_view::npos) break;
        from = bar + 1;
      }
    } else {
      auto literal = route_literal(piece);
      if (!literal) return std::nullopt;
      s.literal = std::move(*literal);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

RoutePattern::RoutePattern(const std::string& pattern) : label_(route_pattern_template(pattern)) {
  if (auto segments = route_segments<Segment>(pattern)) {
    segments_ = std::move(*segments);
    captures_ = static_cast<std::size_t>(
        std::count_if(segments_.begin(), segments_.end(), [](const Segment& s) { return s.kind != Segment::Kind::Literal; }));
    return;
  }
  regex_.emplace(pattern);
  prefix_ = pattern.substr(0, pattern.find_first_of(kRouteRegexMeta));
}

bool RoutePattern::match(std::string_view path, const std::vector<std::string_view>& segments,
                         std::vector<std::string>& groups) const {
  if (regex_) {
    if (path.compare(0, prefix_.size(), prefix_) != 0) return false;
    std::cmatch m;
    if (!std::regex_match(path.data(), path.data() + path.size(), m, *regex_)) return false;
    groups.clear();
    groups.reserve(m.size());
    for (const auto& g : m) groups.push_back(g.str());
    return true;
  }
  if (segments.size() != segments_.size()) return false;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const auto& s = segments_[i];
    switch (s.kind) {
      case Segment::Kind::Literal:
        if (segments[i] != s.literal) return false;
        break;
      case Segment::Kind::Any:
        if (segments[i].empty()) return false;
        break;
      case Segment::Kind::OneOf:
        if (std::find(s.choices.begin(), s.choices.end(), segments[i]) == s.choices.end()) return false;
        break;
    }
  }
  groups.clear();
  groups.reserve(captures_ + 1);
  groups.emplace_back(path);
  for (std::size_t i = 0; i < segments_.size(); ++i)
    if (segments_[i].kind != Segment::Kind::Literal) groups.emplace_back(segments[i]);
  return true;
}

std::vector<std::string_view> RouteTable::split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  out.reserve(8);
  std::size_t start = 1;
  for (;;) {
    const auto slash = path.find('/', start);
    out.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

std::size_t RouteTable::add(const std::string& method, const std::string& pattern) {
  routes_.push_back({method, RoutePattern(pattern)});
  const std::size_t index = routes_.size() - 1;
  auto it = std::find_if(by_method_.begin(), by_method_.end(), [&](const MethodRoutes& m) { return m.method == method; });
  if (it == by_method_.end()) it = by_method_.insert(by_method_.end(), MethodRoutes{method, {}});
  it->indexes.push_back(index);
  return index;
}

std::optional<std::size_t> RouteTable::find(std::string_view method, std::string_view path,
                                            std::vector<std::string>& groups) const {
  const auto it = std::find_if(by_method_.begin(), by_method_.end(), [&](const MethodRoutes& m) { return m.method == method; });
  if (it == by_method_.end()) return std::nullopt;
  const auto segments = split_path(path);
  for (const std::size_t index : it->indexes)
    if (routes_[index].pattern.match(path, segments, groups)) return index;
  return std::nullopt;
}

}  // namespace http

// ---- legacy cpp-httplib server (tests' loopback receivers) ----

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
