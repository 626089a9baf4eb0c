#include "switchboard/workers/offset_tracker.hpp"

namespace sb {

bool OffsetTracker::track(int64_t offset) {
  if (next_ && offset < *next_) return false;  // already finished and passed
  return in_flight_.emplace(offset, false).second;
}

bool OffsetTracker::done(int64_t offset) {
  auto it = in_flight_.find(offset);
  if (it == in_flight_.end() || it->second) return false;
  it->second = true;
  // Advance over the finished prefix; everything before the first unfinished record is safe.
  while (!in_flight_.empty() && in_flight_.begin()->second) {
    next_ = in_flight_.begin()->first + 1;
    in_flight_.erase(in_flight_.begin());
  }
  return true;
}

std::optional<int64_t> OffsetTracker::committable() const {
  if (!next_ || (committed_ && *committed_ >= *next_)) return std::nullopt;
  return next_;
}

}  // namespace sb
