#include "switchboard/workers/partition_progress.hpp"

#include <algorithm>
#include <string>

#include "switchboard/core/log.hpp"

namespace sb {

void PartitionProgress::assign(const std::vector<TopicPartition>& partitions) {
  std::lock_guard lock(mu_);
  for (const auto& tp : partitions) partitions_.try_emplace(tp, State{next_epoch_++, {}, 0});
}

std::size_t PartitionProgress::remove(const std::vector<TopicPartition>& partitions) {
  std::lock_guard lock(mu_);
  std::size_t unfinished = 0;
  for (const auto& tp : partitions)
    if (auto it = partitions_.find(tp); it != partitions_.end()) {
      unfinished += it->second.tracker.pending();
      partitions_.erase(it);
    }
  idle_cv_.notify_all();
  return unfinished;
}

bool PartitionProgress::owns(const TopicPartition& tp) const {
  std::lock_guard lock(mu_);
  return partitions_.count(tp) > 0;
}

std::vector<kafka::TopicPartition> PartitionProgress::owned() const {
  std::lock_guard lock(mu_);
  std::vector<TopicPartition> out;
  for (const auto& [tp, _] : partitions_) out.push_back(tp);
  return out;
}

std::optional<uint64_t> PartitionProgress::track(const TopicPartition& tp, int64_t offset) {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(tp);
  if (it == partitions_.end() || !it->second.tracker.track(offset)) return std::nullopt;
  ++it->second.in_hand;
  return it->second.epoch;
}

std::size_t PartitionProgress::in_hand() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [_, st] : partitions_) n += st.in_hand;
  return n;
}

void PartitionProgress::finished(const TopicPartition& tp, int64_t offset, std::optional<uint64_t> epoch) {
  std::lock_guard lock(mu_);
  auto it = partitions_.find(tp);
  if (it == partitions_.end() || (epoch && it->second.epoch != *epoch)) return;  // the new owner redoes it
  if (it->second.tracker.done(offset) && it->second.in_hand > 0) --it->second.in_hand;
  idle_cv_.notify_all();
}

void PartitionProgress::released(const TopicPartition& tp, std::size_t n, std::optional<uint64_t> epoch) {
  std::lock_guard lock(mu_);
  if (auto it = partitions_.find(tp); it != partitions_.end() && (!epoch || it->second.epoch == *epoch))
    it->second.in_hand -= std::min(n, it->second.in_hand);
  idle_cv_.notify_all();
}

bool PartitionProgress::wait_idle(const std::vector<TopicPartition>& partitions,
                                  std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_until(lock, deadline, [&] {
    for (const auto& tp : partitions)
      if (auto it = partitions_.find(tp); it != partitions_.end() && it->second.in_hand > 0) return false;
    return true;
  });
}

void PartitionProgress::commit(kafka::Consumer& consumer, const std::vector<TopicPartition>* only, std::string_view who) {
  std::map<TopicPartition, int64_t> offsets;
  {
    std::lock_guard lock(mu_);
    for (auto& [tp, st] : partitions_) {
      if (only && std::find(only->begin(), only->end(), tp) == only->end()) continue;
      if (auto next = st.tracker.committable()) offsets[tp] = *next;
    }
  }
  if (offsets.empty()) return;
  try {
    consumer.commit(offsets, false);
    std::lock_guard lock(mu_);
    for (const auto& [tp, next] : offsets)
      if (auto it = partitions_.find(tp); it != partitions_.end()) it->second.tracker.mark_committed(next);
  } catch (const Error& e) {
    log::warn(std::string(who) + ".commit_failed", {{"detail", e.what()}});  // retried next time
  }
}

}  // namespace sb
