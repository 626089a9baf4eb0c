#include "switchboard/core/kafka_publisher.hpp"

#include <condition_variable>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <vector>

#include "switchboard/core/ids.hpp"
#include "switchboard/core/log.hpp"

namespace sb::kafka {
namespace {
using Clock = std::chrono::steady_clock;

bool retry_worthy(rd_kafka_resp_err_t err) {
  // A missing topic is an operator's fix away (`switchboard topics ensure`), not a poison record.
  return is_retryable(err) || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
         err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__QUEUE_FULL;
}
}  // namespace

struct ReliablePublisher::Impl : std::enable_shared_from_this<Impl> {
  struct Record {
    std::string topic, key, value;
    Headers headers;
    Acked on_acked;
    Failed on_failed;
    int attempt = 0;
  };
  struct Due {
    Clock::time_point at;
    uint64_t seq;
    std::shared_ptr<Record> record;
    bool operator>(const Due& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  Producer& producer;
  RetryPolicy policy;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> retries;
  uint64_t seq = 0;
  bool stopping = false;
  std::atomic<std::size_t> pending{0};
  std::mt19937_64 rng{std::random_device{}()};
  std::thread thread;  // started last

  Impl(Producer& p, RetryPolicy pol) : producer(p), policy(pol) {}

  void start(std::shared_ptr<Record> r) {
    ++r->attempt;
    std::weak_ptr<Impl> weak = weak_from_this();
    try {
      producer.produce(r->topic, r->key, r->value, r->headers, [weak, r](const DeliveryResult& d) {
        if (auto self = weak.lock()) self->delivered(r, d);
      });
    } catch (const Error& e) {
      if (e.retryable()) return later(r, e.what());  // local queue full: back off
      fail(r, e.what());  // refused before queueing (too large, unknown partitioner…): poison
    }
  }

  void delivered(const std::shared_ptr<Record>& r, const DeliveryResult& d) {
    if (d.ok()) {
      --pending;
      if (r->on_acked) r->on_acked();
      return;
    }
    if (d.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || d.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
      --pending;  // shutting down: left unacked, so its source is redone by the next owner
      return;
    }
    if (retry_worthy(d.err)) return later(r, d.error);
    fail(r, d.error);
  }

  void fail(const std::shared_ptr<Record>& r, const std::string& why) {
    --pending;
    log::error("publish.refused", {{"topic", r->topic}, {"key", r->key}, {"error", why},
                                   {"bytes", std::to_string(r->value.size())}});
    if (r->on_failed) r->on_failed(Error(ErrorKind::Invalid, "Kafka refused the record for '" + r->topic + "': " + why));
  }

  void later(const std::shared_ptr<Record>& r, const std::string& why) {
    std::lock_guard lock(mu);
    if (stopping) {
      --pending;
      return;
    }
    const auto delay = policy.delay(r->attempt, rng);
    if (r->attempt == 1 || r->attempt % 20 == 0)
      log::warn("publish.retry", {{"topic", r->topic}, {"key", r->key}, {"attempt", std::to_string(r->attempt)},
                                  {"delay_ms", std::to_string(delay.count())}, {"error", why}});
    retries.push({Clock::now() + delay, seq++, r});
    cv.notify_one();
  }

  void loop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (retries.empty()) {
        cv.wait(lock);
        continue;
      }
      const auto at = retries.top().at;
      if (Clock::now() < at) {
        cv.wait_until(lock, at);
        continue;
      }
      auto r = retries.top().record;
      retries.pop();
      lock.unlock();
      start(r);
      lock.lock();
    }
  }
};

ReliablePublisher::ReliablePublisher(Producer& producer, RetryPolicy policy)
    : impl_(std::make_shared<Impl>(producer, policy)) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

ReliablePublisher::~ReliablePublisher() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

void ReliablePublisher::publish(std::string topic, std::string key, std::string value, Headers headers,
                                Acked on_acked, Failed on_failed) {
  ++impl_->pending;
  impl_->start(std::make_shared<Impl::Record>(Impl::Record{std::move(topic), std::move(key), std::move(value),
                                                           std::move(headers), std::move(on_acked),
                                                           std::move(on_failed), 0}));
}

std::size_t ReliablePublisher::pending() const { return impl_->pending.load(); }

Headers dead_letter_headers(const TopicPartition& source, int64_t offset, const std::string& reason,
                            const std::string& detail, Headers extra) {
  Headers h = {{"sb-dlq-reason", reason},
               {"sb-dlq-error", detail},
               {"sb-source-topic", source.topic},
               {"sb-source-partition", std::to_string(source.partition)},
               {"sb-source-offset", std::to_string(offset)},
               {"sb-dead-lettered-at", now_rfc3339()}};
  for (auto& e : extra) h.push_back(std::move(e));
  return h;
}

}  // namespace sb::kafka
