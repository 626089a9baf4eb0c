#include "switchboard/producers/queued_message_writer.hpp"

#include "switchboard/core/log.hpp"

namespace sb {

QueuedMessageWriter::QueuedMessageWriter(const IntakeConfig& config, MessageStore& store)
    : config_(config), store_(store), thread_([this] { loop(); }) {}

QueuedMessageWriter::~QueuedMessageWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  thread_.join();
}

std::future<InsertOutcome> QueuedMessageWriter::insert(NewMessage message) {
  Pending p{std::move(message), {}};
  auto fut = p.promise.get_future();
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(p));
  cv_.notify_one();
  return fut;
}

void QueuedMessageWriter::loop() {
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
    }
    // Linger briefly so concurrent requests share the transaction.
    if (config_.insert_linger_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(config_.insert_linger_ms));
    {
      std::lock_guard lock(mu_);
      while (!queue_.empty() && batch.size() < static_cast<std::size_t>(config_.insert_batch_max)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    write(batch);
  }
}

void QueuedMessageWriter::write(std::vector<Pending>& batch) {
  std::vector<NewMessage> rows;
  for (const auto& p : batch) rows.push_back(p.message);
  try {
    auto outcomes = store_.insert_queued(rows);
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].promise.set_value(outcomes[i]);
    return;
  } catch (const Error& e) {
    if (e.retryable() || batch.size() == 1) {
      for (auto& p : batch) p.promise.set_exception(std::current_exception());
      return;
    }
    // One bad row must not fail its neighbours: retry each alone to find it.
    log::warn("intake.batch_insert_split", {{"size", std::to_string(batch.size())}, {"detail", e.what()}});
  }
  for (auto& p : batch) {
    try {
      p.promise.set_value(store_.insert_queued({p.message}).at(0));
    } catch (...) {
      p.promise.set_exception(std::current_exception());
    }
  }
}

}  // namespace sb
