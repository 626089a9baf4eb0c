#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "switchboard/workers/session_scheduler.hpp"

using Sched = sb::SessionScheduler<int>;

TEST_CASE("scheduler: one session runs in order, one job at a time", "[unit][scheduler][concurrency]") {
  Sched s;
  s.enqueue("a", 1);
  s.enqueue("a", 2);
  auto first = s.next();
  REQUIRE(first);
  CHECK(first->second == 1);
  s.enqueue("b", 10);
  auto second = s.next();  // "a" is busy, so b's job comes next
  REQUIRE(second);
  CHECK(second->first == "b");
  s.finish("a");
  auto third = s.next();
  REQUIRE(third);
  CHECK(third->second == 2);
  CHECK(s.buffered() == 2);
  s.finish("b");
  s.finish("a");
  CHECK(s.buffered() == 0);
}

TEST_CASE("scheduler: queued jobs can be dropped, running ones are not", "[unit][scheduler][concurrency]") {
  Sched s;
  for (int i = 0; i < 5; ++i) s.enqueue("a", i);
  s.enqueue("b", 100);
  auto running = s.next();
  CHECK(running->second == 0);
  CHECK(s.drop_queued([](int j) { return j < 100; }) == 4);
  CHECK(s.buffered() == 2);
  s.finish("a");
  auto n = s.next();
  CHECK(n->second == 100);
  s.finish("b");
  s.stop();
  CHECK_FALSE(s.next());
}

TEST_CASE("scheduler: a slow session does not stall the others; per-session order holds under threads",
          "[unit][scheduler][concurrency]") {
  Sched s;
  std::mutex mu;
  std::map<std::string, std::vector<int>> order;
  std::atomic<int> concurrent_a{0}, max_concurrent_a{0}, done{0}, others_done{0}, s0_done_when_others_finished{-1};
  const int sessions = 20, per_session = 50;
  for (int i = 0; i < per_session; ++i)
    for (int k = 0; k < sessions; ++k) s.enqueue("s" + std::to_string(k), i);
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t)
    pool.emplace_back([&] {
      while (auto job = s.next()) {
        if (job->first == "s0") {  // the slow one
          int c = ++concurrent_a;
          max_concurrent_a = std::max(max_concurrent_a.load(), c);
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          --concurrent_a;
        }
        {
          std::lock_guard lock(mu);
          order[job->first].push_back(job->second);
          if (job->first != "s0" && ++others_done == (sessions - 1) * per_session)
            s0_done_when_others_finished = static_cast<int>(order["s0"].size());
        }
        ++done;
        s.finish(job->first);
      }
    });
  while (done < sessions * per_session) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.stop();
  for (auto& t : pool) t.join();
  CHECK(max_concurrent_a == 1);
  // Everyone else finished while the slow session still had most of its work queued.
  CHECK(s0_done_when_others_finished >= 0);
  CHECK(s0_done_when_others_finished < per_session / 2);
  for (const auto& [session, seq] : order) {
    REQUIRE(seq.size() == per_session);
    for (int i = 0; i < per_session; ++i) CHECK(seq[i] == i);
  }
}
