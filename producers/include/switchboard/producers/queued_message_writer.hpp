#pragma once
// Group commit for intake: concurrent requests' "queued" rows are inserted together, one
// transaction per batch, so the database's commit rate doesn't cap request throughput. Callers
// never block: they hand over a row and a callback, which the writer thread runs once the batch
// committed (or failed). Rows whose publish definitely failed are discarded here too, in the
// same FIFO, so no request thread ever waits on PostgreSQL for it. intake.insert_writers
// threads each take the next batch, so one batch's commit (an fsync) overlaps the next one's
// linger and insert instead of queueing every request behind it.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {

class QueuedMessageWriter {
 public:
  // Exactly one of outcome / error is meaningful: error is what the insert threw for this row
  // (Unavailable, Conflict…), else outcome holds the result. Runs on the writer thread: must
  // not throw, must not block long (publishing to Kafka is fine).
  using Done = std::function<void(const InsertOutcome& outcome, std::exception_ptr error)>;

  QueuedMessageWriter(const IntakeConfig& config, MessageStore& store);
  ~QueuedMessageWriter();  // stop()

  void insert(NewMessage message, Done done);
  // Deletes a queued row whose command never reached Kafka (asynchronously; failures logged).
  void discard(std::string id);
  // Writes what is queued, then stops: later inserts fail with Unavailable at once, later
  // discards run on the caller's thread.
  void stop();

  // Totals since start, for /metrics: batches written, rows in them, time spent writing.
  struct Stats {
    uint64_t batches = 0, rows = 0, write_us = 0;
  };
  Stats stats() const { return {batches_.load(), rows_.load(), write_us_.load()}; }

 private:
  struct Pending {
    NewMessage message;
    Done done;
  };
  void loop();
  void write(std::vector<Pending>& batch);
  void discard_now(const std::string& id);

  IntakeConfig config_;
  MessageStore& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::vector<std::string> discards_;
  std::atomic<uint64_t> batches_{0}, rows_{0}, write_us_{0};
  bool stopping_ = false;
  bool loop_done_ = false;
  int running_loops_ = 0;
  std::vector<std::thread> threads_;  // last: they reach everything above
};

}  // namespace sb
