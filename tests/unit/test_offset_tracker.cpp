#include <catch2/catch.hpp>
#include <algorithm>
#include <random>
#include <vector>

#include "switchboard/workers/offset_tracker.hpp"
#include "switchboard/workers/partition_progress.hpp"

using sb::OffsetTracker;

TEST_CASE("offset tracker: commits only the contiguous finished prefix", "[unit][offsets][concurrency]") {
  OffsetTracker t;
  for (int64_t o = 10; o < 15; ++o) t.track(o);
  CHECK_FALSE(t.committable());
  CHECK(t.done(12));
  CHECK_FALSE(t.committable());  // 10 and 11 still running
  CHECK(t.done(10));
  CHECK(t.committable() == 11);
  t.mark_committed(11);
  CHECK_FALSE(t.committable());  // nothing new
  CHECK(t.done(11));
  CHECK(t.committable() == 13);  // 11 and 12 done: next to read is 13
  CHECK(t.pending() == 2);
  CHECK(t.done(14));
  CHECK(t.committable() == 13);
  CHECK(t.done(13));
  CHECK(t.committable() == 15);
  CHECK(t.pending() == 0);
}

TEST_CASE("offset tracker: gaps, duplicates and unknown offsets", "[unit][offsets][concurrency]") {
  OffsetTracker t;
  t.track(100);
  t.track(105);  // offsets 101-104 compacted away
  CHECK(t.done(100));
  CHECK(t.committable() == 101);
  CHECK_FALSE(t.done(100));  // twice
  CHECK_FALSE(t.done(103));  // never tracked
  CHECK(t.done(105));
  CHECK(t.committable() == 106);
  t.track(104);  // a stale redelivery below the frontier is ignored
  CHECK(t.pending() == 0);
}

TEST_CASE("offset tracker: random completion order never commits past an unfinished record", "[unit][offsets][concurrency]") {
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    OffsetTracker t;
    std::vector<int64_t> offsets;
    for (int64_t o = 0; o < 200; ++o) {
      t.track(o);
      offsets.push_back(o);
    }
    std::shuffle(offsets.begin(), offsets.end(), rng);
    std::vector<bool> finished(200, false);
    for (auto o : offsets) {
      t.done(o);
      finished[o] = true;
      if (auto c = t.committable()) {
        for (int64_t below = 0; below < *c; ++below) REQUIRE(finished[below]);
        if (*c < 200) REQUIRE_FALSE(finished[*c]);  // and it is the highest such point
      }
    }
    CHECK(t.committable() == 200);
  }
}

TEST_CASE("partition progress: late completions of a lost partition are ignored, idle waits, hysteresis",
          "[unit][offsets][concurrency]") {
  sb::PartitionProgress p;
  const sb::kafka::TopicPartition tp{"t", 0};
  p.assign({tp});
  const auto old_epoch = p.track(tp, 10);
  p.track(tp, 11);
  CHECK_FALSE(p.wait_idle({tp}, std::chrono::steady_clock::now() + std::chrono::milliseconds(10)));
  p.finished(tp, 10, old_epoch);
  p.released(tp);  // 11 given up
  CHECK(p.wait_idle({tp}, std::chrono::steady_clock::now() + std::chrono::milliseconds(10)));
  CHECK(p.remove({tp}) == 1);  // 11 never finished
  CHECK_FALSE(p.owns(tp));

  p.assign({tp});  // back again: a new epoch
  const auto epoch = p.track(tp, 11);
  CHECK(epoch != old_epoch);
  p.finished(tp, 11, old_epoch);  // a late completion from before: ignored
  CHECK_FALSE(p.wait_idle({tp}, std::chrono::steady_clock::now() + std::chrono::milliseconds(10)));
  p.finished(tp, 11, epoch);
  CHECK(p.wait_idle({tp}, std::chrono::steady_clock::now() + std::chrono::milliseconds(10)));

  sb::Backpressure b;
  CHECK_FALSE(b.update(9, 10));
  CHECK(b.update(10, 10) == true);
  CHECK_FALSE(b.update(6, 10));  // still above half: stays paused
  CHECK(b.update(4, 10) == false);
  CHECK(b.paused() == false);
}
