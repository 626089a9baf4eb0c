#include "switchboard/producers/queued_message_writer.hpp"

#include "switchboard/core/log.hpp"

#include <algorithm>

namespace sb {

QueuedMessageWriter::QueuedMessageWriter(const IntakeConfig& config, MessageStore& store)
    : config_(config), store_(store) {
  running_loops_ = std::max(1, config.insert_writers);
  for (int i = 0; i < running_loops_; ++i) threads_.emplace_back([this] { loop(); });
}

QueuedMessageWriter::~QueuedMessageWriter() { stop(); }

void QueuedMessageWriter::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();  // every writer thread must see it, not just one
  }
  for (auto& t : threads_)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
}

void QueuedMessageWriter::insert(NewMessage message, Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back({std::move(message), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done({}, std::make_exception_ptr(Unavailable("intake is shutting down")));
}

void QueuedMessageWriter::discard(std::string id) {
  {
    std::lock_guard lock(mu_);
    if (!loop_done_) {
      discards_.push_back(std::move(id));
      cv_.notify_one();
      return;
    }
  }
  discard_now(id);
}

void QueuedMessageWriter::discard_now(const std::string& id) {
  try {
    store_.discard(id);
  } catch (const Error& e) {
    log::error("intake.discard_failed", {{"message_id", id}, {"detail", e.what()}});
  }
}

void QueuedMessageWriter::loop() {
  for (;;) {
    std::vector<Pending> batch;
    std::vector<std::string> discards;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !discards_.empty(); });
      if (queue_.empty() && discards_.empty() && stopping_) break;
      discards.swap(discards_);
    }
    for (const auto& id : discards) discard_now(id);
    // Linger briefly so concurrent requests share the transaction.
    if (config_.insert_linger_ms > 0 && !stopping_) std::this_thread::sleep_for(std::chrono::milliseconds(config_.insert_linger_ms));
    {
      std::lock_guard lock(mu_);
      while (!queue_.empty() && batch.size() < static_cast<std::size_t>(config_.insert_batch_max)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      write(batch);
      ++batches_;
      rows_ += batch.size();
      write_us_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  // Discards queued by callbacks that ran after the loop's last look.
  std::vector<std::string> rest;
  {
    std::lock_guard lock(mu_);
    rest.swap(discards_);
    if (--running_loops_ == 0) loop_done_ = true;  // from now on discard() runs on its caller's thread
  }
  for (const auto& id : rest) discard_now(id);
}

void QueuedMessageWriter::write(std::vector<Pending>& batch) {
  auto deliver = [](Pending& p, const InsertOutcome& o, std::exception_ptr e) {
    try {
      p.done(o, e);
    } catch (const std::exception& ex) {
      log::error("intake.insert_callback_failed", {{"message_id", p.message.id}, {"detail", ex.what()}});
    }
  };
  std::vector<NewMessage> rows;
  rows.reserve(batch.size());
  for (const auto& p : batch) rows.push_back(p.message);
  try {
    auto outcomes = store_.insert_queued(rows);
    for (std::size_t i = 0; i < batch.size(); ++i) deliver(batch[i], outcomes[i], nullptr);
    return;
  } catch (const Error& e) {
    if (e.retryable() || batch.size() == 1) {
      for (auto& p : batch) deliver(p, {}, std::current_exception());
      return;
    }
    // One bad row must not fail its neighbours: retry each alone to find it.
    log::warn("intake.batch_insert_split", {{"size", std::to_string(batch.size())}, {"detail", e.what()}});
  } catch (...) {
    for (auto& p : batch) deliver(p, {}, std::current_exception());
    return;
  }
  for (auto& p : batch) {
    InsertOutcome o;
    std::exception_ptr err;
    try {
      o = store_.insert_queued({p.message}).at(0);
    } catch (...) {
      err = std::current_exception();
    }
    deliver(p, o, err);
  }
}

}  // namespace sb
