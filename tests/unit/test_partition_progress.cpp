// PartitionProgress defects from the core review (C4, C5): each case failed before its fix.
#include <catch2/catch.hpp>
#include <chrono>

#include "switchboard/workers/partition_progress.hpp"

namespace {
const sb::kafka::TopicPartition tp{"t", 0};
bool idle(sb::PartitionProgress& p) {
  return p.wait_idle({tp}, std::chrono::steady_clock::now() + std::chrono::milliseconds(1));
}
}  // namespace

TEST_CASE("partition progress C4: a redelivered offset is not counted in hand twice", "[unit][offsets][concurrency]") {
  sb::PartitionProgress p;
  p.assign({tp});
  const auto e = p.track(tp, 5);
  REQUIRE(e);
  CHECK_FALSE(p.track(tp, 5));  // the same record again (offset reset): skip it
  p.finished(tp, 5, e);
  CHECK_FALSE(p.track(tp, 5));  // below the frontier: already done
  CHECK(p.in_hand() == 0);
  CHECK(idle(p));  // a revoke would not wait out its timeout for a phantom record
}

TEST_CASE("partition progress C5: records of a partition not (or no longer) owned are refused",
          "[unit][offsets][concurrency]") {
  sb::PartitionProgress p;
  CHECK_FALSE(p.track(tp, 1));  // ahead of its assignment
  CHECK_FALSE(p.owns(tp));      // and it did not resurrect the partition
  p.assign({tp});
  const auto e = p.track(tp, 1);
  REQUIRE(e);
  p.track(tp, 2);
  p.assign({tp});  // a repeated assignment keeps what is pending
  p.finished(tp, 2, e);
  CHECK(p.in_hand() == 1);  // 1 is still pending, so nothing commits past it
  p.remove({tp});
  CHECK_FALSE(p.track(tp, 3));  // a stale record after the revoke
  CHECK_FALSE(p.owns(tp));
}
