#pragma once
// The per_session ordering protocol in one place. Live deliveries of one (endpoint, session)
// form a line: the head is in flight, the rest wait behind it in memory. When the head fails
// (or is parked), it and everything behind it go to the durable schedule in line order, and
// the line stays "parking" until the head's row is written; arrivals meanwhile are parked
// behind it. Once the row is written the line is dropped: from then on the schedule itself
// holds newcomers back (the caller's has_pending check) and releases rows oldest first.
//
// Row order is the order of the park callbacks: every callback runs under this object's lock,
// and the recorder writes rows in submission order. Callbacks must therefore be quick and
// must not call back into this object. Thread-safe; no I/O of its own.
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace sb {

template <typename T>
class SessionLines {
 public:
  using Key = std::pair<std::string, std::string>;  // (endpoint id, session or "")

  // A live delivery arrives. true: taken care of — queued behind the head, or (line parking)
  // handed to park(item) at once. false: no line; the caller checks the schedule and either
  // parks it or calls open().
  template <typename Park>
  bool join(const Key& key, T& item, Park&& park) {
    std::lock_guard lock(mu_);
    auto it = lines_.find(key);
    if (it == lines_.end()) return false;
    if (it->second.parking) park(std::move(item));
    else it->second.waiting.push_back(std::move(item));
    return true;
  }

  // Starts a line with `head` in flight (the caller sends it).
  void open(const Key& key, const T& head) {
    std::lock_guard lock(mu_);
    lines_[key].waiting.push_back(head);
  }

  // The head's attempt ended. record_head() runs first (under the lock), then, if the head was
  // parked, park(item) for everything behind it, in order. Returns the new head to send (not
  // parked, someone waiting); the line is dropped when nobody waits.
  template <typename RecordHead, typename Park>
  std::optional<T> head_done(const Key& key, bool parked, RecordHead&& record_head, Park&& park) {
    std::deque<T> behind;
    std::optional<T> next;
    std::lock_guard lock(mu_);
    auto it = lines_.find(key);
    if (it != lines_.end()) {
      auto& line = it->second;
      if (!line.waiting.empty()) line.waiting.pop_front();  // the head
      if (parked) {
        behind.swap(line.waiting);
        line.parking = true;
      } else if (!line.waiting.empty()) {
        next = line.waiting.front();  // stays in line as the new head
      } else {
        lines_.erase(it);
      }
    }
    record_head();
    for (auto& b : behind) park(std::move(b));
    return next;
  }

  // A parked head's row is durable: the schedule holds the session back from now on.
  void parked_durable(const Key& key) {
    std::lock_guard lock(mu_);
    if (auto it = lines_.find(key); it != lines_.end() && it->second.parking) lines_.erase(it);
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return lines_.size();
  }

 private:
  struct Line {
    std::deque<T> waiting;  // front: in flight
    bool parking = false;
  };
  mutable std::mutex mu_;
  std::map<Key, Line> lines_;
};

}  // namespace sb
