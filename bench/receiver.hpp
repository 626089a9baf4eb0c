#pragma once
// The loopback webhook receiver the benchmarks deliver to: a small epoll HTTP/1.1 server on one
// thread. Used by bench_webhooks (dispatcher alone) and bench_e2e (the whole path).
#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.hpp"

namespace sbbench {

// The loopback receiver: a small epoll HTTP/1.1 server on one thread. POST /e/<n> is answered
// 200 at once; POST /h/<n> is held for hang_ms (past the dispatcher's timeout) first. Each
// request's arrival time, endpoint, webhook-id and the body's message id are kept.
//
// Not cpp-httplib: its server polls every idle keep-alive connection every ~10 ms from its own
// thread, which with the ~1,000 connections the dispatcher opens to 1,000 endpoints burns most
// of a core (measured: 0.83 CPU-s/s for 1,000 idle connections) — the receiver would be what
// is measured, on a 2-core machine.
class Receiver {
 public:
  struct Arrival {
    int endpoint;
    bool hanging;
    Clock::time_point at;
    std::string id;          // webhook-id (the event id)
    std::string message_id;  // the event body's data.message_id ("" if none)
    std::string type;        // the event's type ("" if none)
  };

  explicit Receiver(int hang_ms = 0) : hang_ms_(hang_ms) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    int yes = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, SOMAXCONN) == 0);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(epoll_fd_ >= 0);
    REQUIRE(wake_fd_ >= 0);
    watch(listen_fd_, EPOLLIN, EPOLL_CTL_ADD);
    watch(wake_fd_, EPOLLIN, EPOLL_CTL_ADD);
    thread_ = std::thread([this] { loop(); });
  }
  ~Receiver() {
    stopping_ = true;
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
    for (auto& [fd, c] : conns_) ::close(fd);
    ::close(listen_fd_);
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }
  int port() const { return port_; }
  std::string url(bool hang, int endpoint) const {
    return "http://127.0.0.1:" + std::to_string(port_) + (hang ? "/h/" : "/e/") + std::to_string(endpoint);
  }
  // Distinct (event, endpoint) pairs answered 200 at once; repeats of a pair are duplicates.
  std::size_t healthy() const { return healthy_.load(); }
  std::size_t duplicates() const { return duplicates_.load(); }
  std::size_t hanging() const { return hanging_.load(); }
  std::vector<Arrival> arrivals() {
    std::lock_guard lock(mu_);
    return arrivals_;
  }

 private:
  struct Conn {
    uint64_t serial = 0;
    std::string in, out;
    bool held = false;           // a hanging request is being held: read nothing more
    bool continue_sent = false;  // "Expect: 100-continue" answered for the request being read
    bool close_after = false;
  };
  using Timer = std::pair<int, uint64_t>;  // fd, serial

  void watch(int fd, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, op, fd, &ev);
  }

  void loop() {
    std::vector<epoll_event> events(1024);
    while (!stopping_) {
      int wait_ms = -1;
      if (!timers_.empty())
        wait_ms = std::max<int>(0, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(
                                                        timers_.begin()->first - Clock::now()).count()));
      const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), wait_ms);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_fd_) continue;
        if (fd == listen_fd_) {
          accept_all();
          continue;
        }
        auto it = conns_.find(fd);
        if (it == conns_.end()) continue;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
          drop(fd);
          continue;
        }
        if ((events[i].events & EPOLLOUT) && !flush(fd, it->second)) continue;
        if (events[i].events & EPOLLIN) on_readable(fd, it->second);
      }
      const auto now = Clock::now();
      while (!timers_.empty() && timers_.begin()->first <= now) {
        const auto [fd, serial] = timers_.begin()->second;
        timers_.erase(timers_.begin());
        auto it = conns_.find(fd);
        if (it == conns_.end() || it->second.serial != serial || !it->second.held) continue;  // the client gave up
        it->second.held = false;
        it->second.out += kOk;
        if (flush(fd, it->second)) process(fd, it->second);
      }
    }
  }

  void accept_all() {
    for (;;) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int yes = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      conns_[fd].serial = ++serials_;
      watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
  }

  void drop(int fd) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns_.erase(fd);
  }

  void on_readable(int fd, Conn& c) {
    char buf[16384];
    for (;;) {
      const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.in.append(buf, static_cast<std::size_t>(r));
        if (static_cast<std::size_t>(r) < sizeof buf) break;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return drop(fd);  // closed by the client (e.g. after its timeout) or an error
    }
    process(fd, c);
  }

  // Answers every complete request in c.in (stops behind a held one). False if fd was dropped.
  bool process(int fd, Conn& c) {
    while (!c.held) {
      const auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      const std::string_view head(c.in.data(), end);
      const auto line_end = std::min(head.find("\r\n"), head.size());
      const auto request_line = head.substr(0, line_end);
      const auto sp1 = request_line.find(' ');
      const auto sp2 = request_line.find(' ', sp1 + 1);
      const std::string_view path =
          sp1 == std::string_view::npos ? std::string_view() : request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::size_t content_length = 0;
      bool expect_continue = false;
      std::string id;
      for (std::size_t pos = line_end + 2; pos < head.size();) {
        auto e = head.find("\r\n", pos);
        if (e == std::string_view::npos) e = head.size();
        const auto h = head.substr(pos, e - pos);
        pos = e + 2;
        const auto colon = h.find(':');
        if (colon == std::string_view::npos) continue;
        std::string name(h.substr(0, colon));
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
        auto value = h.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (name == "content-length") content_length = std::stoul(std::string(value));
        else if (name == "webhook-id") id = value;
        else if (name == "expect") expect_continue = value == "100-continue";
        else if (name == "connection") c.close_after = value == "close";
      }
      const std::size_t total = end + 4 + content_length;
      if (c.in.size() < total) {
        if (expect_continue && !c.continue_sent) {
          c.continue_sent = true;
          c.out += "HTTP/1.1 100 Continue\r\n\r\n";
          if (!flush(fd, c)) return false;
        }
        break;
      }
      c.continue_sent = false;
      const bool hang = path.rfind("/h/", 0) == 0;
      int endpoint = -1;
      if (hang || path.rfind("/e/", 0) == 0) endpoint = std::atoi(std::string(path.substr(3)).c_str());
      const auto body = std::string_view(c.in).substr(end + 4, content_length);
      std::string message_id = body_field(body, "message_id"), type = body_field(body, "type");
      c.in.erase(0, total);
      if (endpoint < 0) {
        c.out += "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        continue;
      }
      const auto now = Clock::now();
      {
        std::lock_guard lock(mu_);
        if (!hang && !seen_.insert(id + "#" + std::to_string(endpoint)).second) ++duplicates_;
        else if (!hang) ++healthy_;
        arrivals_.push_back({endpoint, hang, now, std::move(id), std::move(message_id), std::move(type)});
      }
      if (hang) {
        ++hanging_;
        c.held = true;
        timers_.emplace(now + std::chrono::milliseconds(hang_ms_), Timer{fd, c.serial});
        break;
      }
      c.out += kOk;
    }
    if (!flush(fd, c)) return false;
    if (c.close_after && c.out.empty() && !c.held) {
      drop(fd);
      return false;
    }
    return true;
  }

  // A string member of the event envelope, by its first occurrence ("message_id" is in data,
  // "type" at the top): a substring search, the body being our own compact JSON.
  static std::string body_field(std::string_view body, std::string_view name) {
    const std::string key = "\"" + std::string(name) + "\":\"";
    const auto at = body.find(key);
    if (at == std::string_view::npos) return {};
    const auto from = at + key.size();
    const auto to = body.find('"', from);
    return to == std::string_view::npos ? std::string() : std::string(body.substr(from, to - from));
  }

  // Writes what it can; watches for writability while something is left. False if dropped.
  bool flush(int fd, Conn& c) {
    while (!c.out.empty()) {
      const ssize_t w = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w > 0) {
        c.out.erase(0, static_cast<std::size_t>(w));
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        return true;
      }
      drop(fd);
      return false;
    }
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    return true;
  }

  static constexpr std::string_view kOk =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";

  int hang_ms_;
  int listen_fd_ = -1, epoll_fd_ = -1, wake_fd_ = -1, port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  // Loop thread only:
  std::unordered_map<int, Conn> conns_;
  uint64_t serials_ = 0;
  std::multimap<Clock::time_point, Timer> timers_;
  // Shared with the benchmark thread:
  std::mutex mu_;
  std::vector<Arrival> arrivals_;
  std::unordered_set<std::string> seen_;
  std::atomic<std::size_t> healthy_{0}, duplicates_{0}, hanging_{0};
};

}  // namespace sbbench
