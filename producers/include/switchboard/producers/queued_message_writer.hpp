#pragma once
// Group commit for intake: concurrent requests' "queued" rows are inserted together, one
// transaction per batch, so the database's commit rate doesn't cap request throughput.
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/message_store.hpp"

namespace sb {

class QueuedMessageWriter {
 public:
  QueuedMessageWriter(const IntakeConfig& config, MessageStore& store);
  ~QueuedMessageWriter();
  // The future throws what the insert threw (Unavailable, Conflict…) for this message only.
  std::future<InsertOutcome> insert(NewMessage message);

 private:
  struct Pending {
    NewMessage message;
    std::promise<InsertOutcome> promise;
  };
  void loop();
  void write(std::vector<Pending>& batch);

  IntakeConfig config_;
  MessageStore& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sb
