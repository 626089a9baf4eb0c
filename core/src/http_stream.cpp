// Long-lived responses of sb::http::Server: a Server-Sent Events body and a WebSocket, both
// behind sb::http::Stream. One queue discipline for both (QueuedStream): callers queue from any
// thread under a mutex; the connection's strand drains the queue, several messages per write,
// one write at a time, each write with a deadline, so a client that stops reading holds a
// bounded queue (its owner's limit) and is dropped after write_timeout_ms at the latest.
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <deque>
#include <sstream>

#include "http_server_impl.hpp"
#include "switchboard/core/log.hpp"

namespace sb::http {
namespace websocket = boost::beast::websocket;

namespace {

using Clock = std::chrono::steady_clock;

class QueuedStream : public StreamConnection, public std::enable_shared_from_this<QueuedStream> {
 public:
  QueuedStream(std::shared_ptr<Server::Impl> impl, asio::any_io_executor strand)
      : impl_(std::move(impl)), strand_(std::move(strand)), deadline_(strand_) {}
  ~QueuedStream() override { impl_->leave(this); }

  // Registers with the server; called right after construction (weak_from_this needs an owner).
  void enroll() { impl_->enroll(this, weak_from_this()); }

  bool send(Message message) override {
    std::lock_guard lock(mu_);
    if (closing_ || closed_) return false;
    queue_.push_back(std::move(message));
    kick_locked();
    return true;
  }

  void heartbeat() override {
    std::lock_guard lock(mu_);
    if (closing_ || closed_ || !queue_.empty()) return;
    heartbeat_due_ = true;
    kick_locked();
  }

  void close(std::string last, uint16_t ws_code) override {
    {
      std::lock_guard lock(mu_);
      if (closing_ || closed_) return;
      closing_ = true;
      queue_.clear();
      heartbeat_due_ = false;
      goodbye_ = std::move(last);
      goodbye_code_ = ws_code;
      kick_locked();
    }
    // The goodbye waits behind the write in progress; a client that never reads again must not
    // hold the connection: it is cut after the write deadline whatever happens.
    asio::post(strand_, [self = shared_from_this()] {
      self->hard_deadline_ = Clock::now() + self->timeout();
      self->watch();
    });
  }

  std::size_t queued() const override {
    std::lock_guard lock(mu_);
    return queue_.size();
  }
  bool closed() const override { return closed_.load(); }

  void on_closed(std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      if (!closed_) {
        on_closed_ = std::move(fn);
        return;
      }
    }
    if (fn) fn();
  }

  void attach(HandOver&& from) override {
    if (closed_) return;  // stopped before the hand-over arrived
    attached_ = true;
    take_socket(std::move(from));
  }

  // stop(): finish what is being written, say goodbye (WebSocket: 1001 going away), close.
  void wind_down() override {
    close({}, 1001);
    if (!attached_) finish();
  }
  void close() override { finish(); }
  asio::any_io_executor executor() override { return strand_; }

 protected:
  // The transport's part. All run on the strand; each write calls written(ec) once.
  virtual void take_socket(HandOver&& from) = 0;
  virtual void write_batch(std::vector<Message> batch, bool heartbeat) = 0;
  virtual void write_goodbye(const std::string& last, uint16_t ws_code) = 0;
  virtual void shut_socket() = 0;

  // The head / handshake is done: queued messages may go out.
  void ready() {
    ready_ = true;
    pump();
  }

  void written(beast::error_code ec) {
    writing_ = false;
    if (ec) return finish();
    pump();
  }

  // One timer per stream, armed only while a write is in progress or a goodbye is due, and
  // not re-armed per write (at tens of thousands of writes a second, a cancel and a re-arm
  // each would cost as much as the write): when it fires it checks how long the current
  // write has taken.
  void watch() {
    if (closed_ || watching_) return;
    const auto due = next_due();
    if (!due) return;
    watching_ = true;
    deadline_.expires_at(*due);
    deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->watching_ = false;
      if (ec || self->closed_) return;
      const auto due = self->next_due();
      if (due && *due <= Clock::now()) return self->finish();  // the client did not take a write in time
      self->watch();
    });
  }

  std::optional<Clock::time_point> next_due() const {
    std::optional<Clock::time_point> due;
    if (writing_) due = write_started_ + timeout();
    if (hard_deadline_ && (!due || *hard_deadline_ < *due)) due = hard_deadline_;
    return due;
  }

  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(impl_->options.write_timeout_ms); }

  // Once: the socket closes, the server forgets us, the owner hears of it.
  void finish() {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      queue_.clear();
      fn = std::move(on_closed_);
    }
    deadline_.cancel();
    if (attached_) shut_socket();
    impl_->leave(this);
    if (fn) {
      try {
        fn();
      } catch (const std::exception& e) {
        log::error("http.stream_on_closed_failed", {{"detail", e.what()}});
      }
    }
  }

  bool closing() {
    std::lock_guard lock(mu_);
    return closing_;
  }

  std::shared_ptr<Server::Impl> impl_;
  asio::any_io_executor strand_;

 private:
  void kick_locked() {
    if (kick_posted_) return;
    kick_posted_ = true;
    asio::post(strand_, [self = shared_from_this()] { self->pump(); });
  }

  // Hands what is queued to the transport: a batch, else the goodbye once closing.
  void pump() {
    std::vector<Message> batch;
    bool heartbeat = false, goodbye = false;
    {
      std::lock_guard lock(mu_);
      kick_posted_ = false;
      if (!ready_ || writing_ || closed_) return;
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
      queue_.clear();
      heartbeat = std::exchange(heartbeat_due_, false);
      goodbye = batch.empty() && !heartbeat && closing_ && !goodbye_sent_;
      if (goodbye) goodbye_sent_ = true;
    }
    if (goodbye) {
      writing_ = true;
      return write_goodbye(goodbye_, goodbye_code_);
    }
    if (batch.empty() && !heartbeat) return;
    writing_ = true;
    write_started_ = Clock::now();
    watch();
    write_batch(std::move(batch), heartbeat);
  }

  mutable std::mutex mu_;
  std::deque<Message> queue_;
  std::function<void()> on_closed_;
  bool closing_ = false;
  bool heartbeat_due_ = false;
  bool kick_posted_ = false;
  bool goodbye_sent_ = false;
  std::string goodbye_;
  uint16_t goodbye_code_ = 1000;
  std::atomic<bool> closed_{false};
  // Strand only.
  bool attached_ = false;
  bool ready_ = false;
  bool writing_ = false;
  bool watching_ = false;
  Clock::time_point write_started_{};
  std::optional<Clock::time_point> hard_deadline_;  // closing: the goodbye must be out by then
  asio::steady_timer deadline_;
};

// text/event-stream over HTTP/1.1 chunked encoding (HTTP/1.0: the body ends when the
// connection does). One chunk per batch.
class EventStream final : public QueuedStream {
 public:
  EventStream(std::shared_ptr<Server::Impl> impl, asio::any_io_executor strand, Response head, unsigned version)
      : QueuedStream(std::move(impl), std::move(strand)), chunked_(version >= 11) {
    bhttp::response<bhttp::empty_body> res;
    res.version(version);
    res.result(static_cast<unsigned>(head.status));
    for (auto& [k, v] : head.headers) res.set(k, v);
    res.keep_alive(false);  // the body lasts as long as the connection
    if (chunked_) res.chunked(true);
    std::ostringstream os;
    os << res.base();
    head_ = os.str();
  }

 private:
  void take_socket(HandOver&& from) override {
    socket_.emplace(std::move(from.socket));
    socket_->expires_never();  // our own deadline times writes; reads may wait forever
    asio::async_write(*socket_, asio::buffer(head_), [self = self()](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();
      self->read_until_gone();
      self->ready();
    });
  }

  // The client sends nothing more; a read completing means it went away (EOF or reset).
  void read_until_gone() {
    socket_->async_read_some(asio::buffer(discard_), [self = self()](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();
      self->read_until_gone();
    });
  }

  void write_batch(std::vector<Message> batch, bool heartbeat) override {
    static const std::string kHeartbeat = ":\n\n";  // an SSE comment: ignored by clients
    static const std::string kCrlf = "\r\n";
    in_flight_ = std::move(batch);
    std::size_t size = heartbeat ? kHeartbeat.size() : 0;
    for (const auto& m : in_flight_) size += m->size();
    std::vector<asio::const_buffer> parts;
    parts.reserve(in_flight_.size() + 3);
    if (chunked_) {
      char hex[24];
      const auto end = std::to_chars(hex, hex + sizeof hex - 2, size, 16).ptr;
      chunk_head_.assign(hex, end);
      chunk_head_ += "\r\n";
      parts.emplace_back(asio::buffer(chunk_head_));
    }
    for (const auto& m : in_flight_) parts.emplace_back(asio::buffer(*m));
    if (heartbeat) parts.emplace_back(asio::buffer(kHeartbeat));
    if (chunked_) parts.emplace_back(asio::buffer(kCrlf));
    asio::async_write(*socket_, parts, [self = self()](beast::error_code ec, std::size_t) {
      self->in_flight_.clear();
      self->written(ec);
    });
  }

  void write_goodbye(const std::string& last, uint16_t) override {
    goodbye_ = last;
    if (chunked_) {
      std::ostringstream framed;
      if (!last.empty()) framed << std::hex << last.size() << "\r\n" << last << "\r\n";
      framed << "0\r\n\r\n";  // the last chunk: the body ends cleanly
      goodbye_ = framed.str();
    }
    asio::async_write(*socket_, asio::buffer(goodbye_), [self = self()](beast::error_code, std::size_t) { self->finish(); });
  }

  void shut_socket() override {
    if (!socket_) return;
    beast::error_code ec;
    socket_->socket().shutdown(tcp::socket::shutdown_both, ec);
    socket_->socket().close(ec);
  }

  std::shared_ptr<EventStream> self() { return std::static_pointer_cast<EventStream>(shared_from_this()); }

  bool chunked_;
  std::string head_;
  std::optional<beast::tcp_stream> socket_;
  std::array<char, 512> discard_{};
  std::vector<Message> in_flight_;
  std::string chunk_head_;
  std::string goodbye_;
};

// RFC 6455 after the handshake: one text frame per message, a ping for a heartbeat, a close
// frame with a code and reason for a goodbye. Client frames are read (pings get their pongs
// from Beast) and ignored.
class WebSocketStream final : public QueuedStream {
 public:
  using QueuedStream::QueuedStream;

 private:
  void take_socket(HandOver&& from) override {
    ws_.emplace(std::move(from.socket));
    beast::get_lowest_layer(*ws_).expires_never();  // Beast's websocket timeouts and ours, not tcp_stream's
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::chrono::milliseconds(impl_->options.write_timeout_ms);
    t.idle_timeout = websocket::stream_base::none();
    t.keep_alive_pings = false;
    ws_->set_option(t);
    ws_->auto_fragment(false);
    ws_->read_message_max(64 * 1024);
    ws_->text(true);
    request_ = std::move(from.request);
    read_buffer_ = std::move(from.buffer);
    ws_->async_accept(request_, [self = self()](beast::error_code ec) {
      if (ec) {
        log::debug("http.websocket_handshake_failed", {{"detail", ec.message()}});
        return self->finish();
      }
      self->read_until_gone();
      self->ready();
    });
  }

  void read_until_gone() {
    read_buffer_.clear();
    ws_->async_read(read_buffer_, [self = self()](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();  // closed by the client, by our close frame, or reset
      self->read_until_gone();
    });
  }

  void write_batch(std::vector<Message> batch, bool heartbeat) override {
    in_flight_ = std::move(batch);
    next_ = 0;
    heartbeat_ = heartbeat;
    write_next();
  }

  void write_next() {
    if (next_ < in_flight_.size()) {
      const auto& m = in_flight_[next_++];
      ws_->async_write(asio::buffer(*m), [self = self()](beast::error_code ec, std::size_t) {
        if (ec) return self->written(ec);
        self->write_next();
      });
      return;
    }
    in_flight_.clear();
    if (std::exchange(heartbeat_, false)) {
      ws_->async_ping({}, [self = self()](beast::error_code ec) { self->written(ec); });
      return;
    }
    written({});
  }

  void write_goodbye(const std::string& last, uint16_t ws_code) override {
    websocket::close_reason reason(ws_code);
    reason.reason = last.substr(0, 123);  // a control frame's payload is at most 125 bytes
    ws_->async_close(reason, [self = self()](beast::error_code) { self->finish(); });
  }

  void shut_socket() override {
    if (!ws_) return;
    beast::error_code ec;
    beast::get_lowest_layer(*ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(*ws_).socket().close(ec);
  }

  std::shared_ptr<WebSocketStream> self() { return std::static_pointer_cast<WebSocketStream>(shared_from_this()); }

  std::optional<websocket::stream<beast::tcp_stream>> ws_;
  bhttp::request<bhttp::string_body> request_;
  beast::flat_buffer read_buffer_;
  std::vector<Message> in_flight_;
  std::size_t next_ = 0;
  bool heartbeat_ = false;
};

}  // namespace

std::shared_ptr<StreamConnection> make_event_stream(std::shared_ptr<Server::Impl> impl, asio::any_io_executor strand,
                                                    Response head, unsigned http_version) {
  auto s = std::make_shared<EventStream>(std::move(impl), std::move(strand), std::move(head), http_version);
  s->enroll();
  return s;
}

std::shared_ptr<StreamConnection> make_websocket_stream(std::shared_ptr<Server::Impl> impl,
                                                        asio::any_io_executor strand) {
  auto s = std::make_shared<WebSocketStream>(std::move(impl), std::move(strand));
  s->enroll();
  return s;
}

}  // namespace sb::http
