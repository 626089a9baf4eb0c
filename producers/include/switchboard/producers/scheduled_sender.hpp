#pragma once
// The scheduler: publishes scheduled messages (send_at) to their lane once due. One thread;
// every turn releases up to scheduler.batch_max due messages in one transaction (see
// core/scheduled_store.hpp for why that is safe with any number of replicas and crashes), and
// turns again at once while a full batch came back, else after scheduler.poll_interval_ms. A
// message is therefore published at most one poll interval (plus a publish) after its send_at
// while a scheduler runs; a scheduler that was down publishes what fell due meanwhile at once.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/scheduled_store.hpp"
#include "switchboard/producers/command_publisher.hpp"

namespace sb {

class ScheduledSender {
 public:
  // Starts the thread. pool and publisher must outlive this object.
  ScheduledSender(const Config& config, pg::Pool& pool, CommandPublisher& publisher);
  ~ScheduledSender();  // stop()
  void stop();         // finishes the turn under way (bounded by the publish timeout)

  struct Stats {
    uint64_t released = 0;        // messages published and marked queued
    uint64_t publish_failures = 0;
    uint64_t turn_failures = 0;   // turns PostgreSQL failed (retried next turn)
  };
  Stats stats() const { return {released_.load(), publish_failures_.load(), turn_failures_.load()}; }

 private:
  void loop();
  std::vector<std::string> publish(const std::vector<SendCommand>& commands);

  const Config& config_;
  ScheduledStore store_;
  CommandPublisher& publisher_;
  std::atomic<uint64_t> released_{0}, publish_failures_{0}, turn_failures_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;  // last: it reaches everything above
};

}  // namespace sb
