#pragma once
// What a consumer-group member knows about each partition it owns: which records are in hand
// and which are durably finished (OffsetTracker), so it commits only finished prefixes, can
// wait for a revoked partition's started work, and ignores late completions of a partition it
// lost (a re-assignment starts a new epoch). Shared by the lane workers and the webhook
// dispatcher. Thread-safe.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "switchboard/core/kafka.hpp"
#include "switchboard/workers/offset_tracker.hpp"

namespace sb {

class PartitionProgress {
 public:
  using TopicPartition = kafka::TopicPartition;

  // Starts tracking them (a new epoch each); a partition already owned keeps its state.
  void assign(const std::vector<TopicPartition>& partitions);
  // Forgets them; returns how many of their records were unfinished (left uncommitted).
  std::size_t remove(const std::vector<TopicPartition>& partitions);
  bool owns(const TopicPartition& tp) const;
  std::vector<TopicPartition> owned() const;

  // A record was received; returns the partition's epoch, for finished(). Returns nothing —
  // and the record must be skipped, not handled — when the partition is not owned (a record
  // fetched before a revoke, or ahead of its assignment) or when the offset is already in hand
  // or finished (a redelivery after an offset reset): handling it would count it twice.
  std::optional<uint64_t> track(const TopicPartition& tp, int64_t offset);
  // Records in hand (tracked, neither finished nor released) over all partitions.
  std::size_t in_hand() const;
  // A tracked record is durably handled. Ignored once the partition is gone, or re-assigned
  // since (epoch given and different).
  void finished(const TopicPartition& tp, int64_t offset, std::optional<uint64_t> epoch = std::nullopt);
  // `n` tracked records were given up without finishing (they stay uncommitted). Ignored like
  // finished() once the partition is gone or re-assigned since (epoch given and different).
  void released(const TopicPartition& tp, std::size_t n = 1, std::optional<uint64_t> epoch = std::nullopt);
  // Waits until none of `partitions` has records in hand, or the deadline; false on timeout.
  bool wait_idle(const std::vector<TopicPartition>& partitions, std::chrono::steady_clock::time_point deadline);
  // Commits each partition's finished prefix (only `only`, when given). A failure is logged as
  // `<who>.commit_failed` and retried at the next call.
  void commit(kafka::Consumer& consumer, const std::vector<TopicPartition>* only, std::string_view who);

 private:
  struct State {
    uint64_t epoch = 0;
    OffsetTracker tracker;
    std::size_t in_hand = 0;  // tracked, neither finished nor released
  };
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::map<TopicPartition, State> partitions_;
  uint64_t next_epoch_ = 1;
};

// Pause at the limit, resume at half of it (hysteresis): one decision per poll-loop turn.
class Backpressure {
 public:
  // The new state when it changes (true = pause now, false = resume now).
  std::optional<bool> update(std::size_t buffered, std::size_t limit) {
    const bool pause = paused_ ? buffered >= limit / 2 : buffered >= limit;
    if (pause == paused_) return std::nullopt;
    paused_ = pause;
    return pause;
  }
  bool paused() const { return paused_; }

 private:
  bool paused_ = false;
};

}  // namespace sb
