// sb::http::Server's long-lived responses on loopback: an SSE body as HTTP/1.1 chunks, a
// WebSocket after the 101 handshake (Beast's own client on the other end), goodbyes with a
// reason, on_closed when the client leaves or the server stops.
#include <catch2/catch.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "switchboard/core/http_server.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

sb::http::Stream::Message msg(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

// A server whose /sse and /ws routes hand their stream to the test, and count closes.
struct StreamServer {
  sb::http::Server server;
  int port = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<sb::http::Stream> stream;
  int closed = 0;

  StreamServer() : server(options()) {
    server.async_route("GET", "/sse", [this](const sb::http::Request&, sb::http::Responder respond) {
      sb::http::Response head;
      head.set_header("Cache-Control", "no-cache");
      keep(respond.open_event_stream(std::move(head)));
    });
    server.async_route("GET", "/ws", [this](const sb::http::Request& req, sb::http::Responder respond) {
      if (!req.is_websocket_upgrade()) {
        sb::http::Response res;
        res.status = 426;
        return respond(std::move(res));
      }
      keep(respond.accept_websocket());
    });
    port = server.bind_listen("127.0.0.1:0", "test");
    server.start();
  }
  static sb::http::ServerOptions options() {
    sb::http::ServerOptions o;
    o.write_timeout_ms = 2000;
    o.stop_grace_ms = 2000;
    return o;
  }
  void keep(std::shared_ptr<sb::http::Stream> s) {
    s->on_closed([this] {
      std::lock_guard lock(mu);
      ++closed;
      cv.notify_all();
    });
    std::lock_guard lock(mu);
    stream = std::move(s);
    cv.notify_all();
  }
  std::shared_ptr<sb::http::Stream> wait_stream() {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return stream != nullptr; }));
    return stream;
  }
  bool wait_closed(int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return closed >= n; });
  }
};

// Reads from a blocking socket until `needle` appears in what was read (or EOF).
std::string read_until(tcp::socket& s, std::string& got, const std::string& needle) {
  std::array<char, 4096> buf{};
  while (got.find(needle) == std::string::npos) {
    beast::error_code ec;
    const auto n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf.data(), n);
  }
  return got;
}

}  // namespace

TEST_CASE("http stream: SSE is a chunked body written as messages are queued and ended by close()", "[unit][http][concurrency]") {
  StreamServer srv;
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv.port)});
  asio::write(s, asio::buffer(std::string("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")));
  auto stream = srv.wait_stream();
  CHECK(stream->send(msg("data: one\n\n")));
  std::string got;
  read_until(s, got, "data: one\n\n");
  CHECK(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(got.find("Content-Type: text/event-stream\r\n") != std::string::npos);
  CHECK(got.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(got.find("Cache-Control: no-cache\r\n") != std::string::npos);
  CHECK(got.find("Content-Length") == std::string::npos);
  CHECK(got.find("b\r\ndata: one\n\n\r\n") != std::string::npos);  // one chunk of 11 bytes

  stream->heartbeat();
  read_until(s, got, "3\r\n:\n\n\r\n");
  stream->close("event: bye\ndata: {}\n\n");
  CHECK_FALSE(stream->send(msg("data: late\n\n")));  // closing: nothing more is queued
  read_until(s, got, "\r\n0\r\n\r\n");
  CHECK(got.find("event: bye\ndata: {}\n\n\r\n0\r\n\r\n") != std::string::npos);
  CHECK(got.find("late") == std::string::npos);
  CHECK(srv.wait_closed(1));
  CHECK(stream->closed());
}

TEST_CASE("http stream: a client that goes away closes its stream", "[unit][http][concurrency]") {
  StreamServer srv;
  {
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv.port)});
    asio::write(s, asio::buffer(std::string("GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")));
    srv.wait_stream();
  }  // the socket closes
  CHECK(srv.wait_closed(1));
  CHECK_FALSE(srv.stream->send(msg("data: x\n\n")));
}

TEST_CASE("http stream: WebSocket frames, ping heartbeats and a close frame with code and reason", "[unit][http][concurrency]") {
  StreamServer srv;
  asio::io_context io;
  websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv.port)});
  ws.handshake("127.0.0.1", "/ws");
  auto stream = srv.wait_stream();
  int pings = 0;
  ws.control_callback([&](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::ping) ++pings;
  });
  stream->send(msg(R"({"n":1})"));
  stream->send(msg(R"({"n":2})"));
  beast::flat_buffer buf;
  ws.read(buf);
  CHECK(ws.got_text());
  CHECK(beast::buffers_to_string(buf.data()) == R"({"n":1})");
  buf.clear();
  ws.read(buf);
  CHECK(beast::buffers_to_string(buf.data()) == R"({"n":2})");
  buf.clear();
  stream->heartbeat();
  stream->send(msg(R"({"n":3})"));  // read after the ping: the ping is seen on the way
  ws.read(buf);
  buf.clear();
  stream->close("slow consumer: resume from your cursor", 1013);
  beast::error_code ec;
  ws.read(buf, ec);
  CHECK(ec == websocket::error::closed);
  CHECK(ws.reason().code == 1013);
  CHECK(std::string(ws.reason().reason.data(), ws.reason().reason.size()) == "slow consumer: resume from your cursor");
  CHECK(srv.wait_closed(1));
  CHECK(pings <= 1);  // a heartbeat while a message waits is skipped
}

TEST_CASE("http stream: a plain GET on a WebSocket route is answered, and stop() closes open streams",
          "[unit][http][concurrency]") {
  auto srv = std::make_unique<StreamServer>();
  asio::io_context io;
  {
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv->port)});
    asio::write(s, asio::buffer(std::string("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")));
    std::string got;
    read_until(s, got, "\r\n\r\n");
    CHECK(got.rfind("HTTP/1.1 426", 0) == 0);
  }
  websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(srv->port)});
  ws.handshake("127.0.0.1", "/ws");
  srv->wait_stream();
  // stop() waits for the close handshake, so the client answers it meanwhile.
  const auto t0 = std::chrono::steady_clock::now();
  std::thread stopper([&] { srv->server.stop(); });
  beast::flat_buffer buf;
  beast::error_code ec;
  ws.read(buf, ec);
  stopper.join();
  CHECK(ec);
  CHECK(ws.reason().code == 1001);  // going away
  // Bounded by the grace period even when the TCP teardown after the close frames lingers
  // (Beast's synchronous client here does not always close its side first).
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(srv->closed == 1);
}
