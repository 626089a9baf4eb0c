#pragma once
// Out-of-order completion, in-order commit, for one partition: records finish in any order, and
// only the highest offset below which everything is finished may be committed.
#include <cstdint>
#include <map>
#include <optional>

namespace sb {

class OffsetTracker {
 public:
  // A record was received. Offsets must arrive in increasing order (Kafka delivers them so);
  // gaps (compaction, transaction markers) are fine. Returns false (and changes nothing) for an
  // offset already pending or already finished: a redelivery of a record in hand or done.
  bool track(int64_t offset);
  // A record is durably handled (result published or dead-lettered). Returns false (and does
  // nothing) for an offset that isn't pending.
  bool done(int64_t offset);
  // The offset to commit (next to read) if it moved since the last mark_committed().
  std::optional<int64_t> committable() const;
  void mark_committed(int64_t next_offset) { committed_ = next_offset; }
  // Records received but not yet done.
  std::size_t pending() const { return in_flight_.size(); }

 private:
  std::map<int64_t, bool> in_flight_;   // offset → finished?
  std::optional<int64_t> next_;         // one past the highest contiguous finished offset
  std::optional<int64_t> committed_;
};

}  // namespace sb
