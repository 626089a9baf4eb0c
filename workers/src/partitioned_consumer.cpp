#include "switchboard/workers/partitioned_consumer.hpp"

#include <chrono>

#include "switchboard/core/log.hpp"

namespace sb {
namespace {
using Steady = std::chrono::steady_clock;

std::string names(const std::vector<kafka::TopicPartition>& parts) {
  std::string out;
  for (const auto& tp : parts) out += (out.empty() ? "" : ",") + std::to_string(tp.partition);
  return out;
}
}  // namespace

PartitionedConsumer::PartitionedConsumer(const KafkaConfig& kafka, Options options, RecordHandler& handler)
    : options_(std::move(options)), handler_(handler) {
  consumer_ = std::make_unique<kafka::Consumer>(kafka, options_.group, static_cast<kafka::RebalanceListener*>(this),
                                               options_.props);
}

PartitionedConsumer::~PartitionedConsumer() = default;

bool PartitionedConsumer::reachable(int timeout_ms) const {
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(consumer_->handle(), 0, nullptr, &md, timeout_ms);
  if (md) rd_kafka_metadata_destroy(md);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

void PartitionedConsumer::run(const std::atomic<bool>& stop) {
  consumer_->subscribe(options_.topics);
  auto last_commit = Steady::now();
  const auto commit_every = std::chrono::milliseconds(options_.commit_interval_ms);
  while (!stop.load()) {
    poll_batch(100);
    apply_backpressure();
    if (Steady::now() - last_commit >= commit_every) {
      progress_.commit(*consumer_, nullptr, options_.who);
      last_commit = Steady::now();
    }
  }
  // Graceful stop: the same steps as a revoke of everything, then leave the group (whose
  // revoke callback then has nothing left to wait for).
  const auto parts = progress_.owned();
  log::info(options_.who + ".stopping", {{"partitions", names(parts)}, {"in_hand", std::to_string(in_hand())}});
  drain(parts);
  stopping_ = true;
  consumer_->close();
}

void PartitionedConsumer::poll_batch(int timeout_ms) {
  std::vector<ConsumedRecord> batch;
  for (auto msg = consumer_->poll(timeout_ms); msg; msg = consumer_->poll(0)) {
    const kafka::TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
    ++stats_.received;
    const auto epoch = progress_.track(tp, msg->offset);
    if (!epoch) {  // not ours (any more), or a redelivery of a record in hand or done
      ++stats_.skipped;
      continue;
    }
    batch.push_back({tp, msg->offset, *epoch, std::string(kafka::key_of(msg.get())), std::string(kafka::value_of(msg.get()))});
    if (batch.size() >= static_cast<std::size_t>(options_.batch_max)) break;
  }
  if (!batch.empty()) handler_.on_records(std::move(batch));
}

void PartitionedConsumer::apply_backpressure() {
  const auto held = in_hand();
  const auto change = backpressure_.update(held, options_.max_buffered);
  if (!change) return;
  const auto parts = progress_.owned();
  if (*change) consumer_->pause(parts);
  else consumer_->resume(parts);
  log::info(*change ? options_.who + ".paused" : options_.who + ".resumed", {{"in_hand", std::to_string(held)}});
}

void PartitionedConsumer::drain(const std::vector<kafka::TopicPartition>& parts) {
  if (parts.empty()) return;
  handler_.on_revoking(parts);
  const bool idle =
      progress_.wait_idle(parts, Steady::now() + std::chrono::milliseconds(options_.drain_timeout_ms));
  progress_.commit(*consumer_, &parts, options_.who);
  const auto unfinished = progress_.remove(parts);
  stats_.abandoned_on_revoke += unfinished;
  log::info(options_.who + ".revoked", {{"partitions", names(parts)}, {"drained", idle ? "true" : "false"},
                                        {"unfinished", std::to_string(unfinished)}});
}

void PartitionedConsumer::on_assigned(const std::vector<kafka::TopicPartition>& parts) {
  stats_.assigned += parts.size();
  progress_.assign(parts);
  if (backpressure_.paused()) consumer_->pause(parts);
  handler_.on_assigned(parts);
  log::info(options_.who + ".assigned", {{"partitions", names(parts)}});
}

void PartitionedConsumer::on_revoked(const std::vector<kafka::TopicPartition>& parts, bool lost) {
  stats_.revoked += parts.size();
  if (stopping_) return;  // the stop already drained and committed everything
  if (lost) {
    // Another member may own these already: committing would be refused, and waiting only
    // delays it. Start nothing more; late completions are ignored by epoch.
    handler_.on_revoking(parts);
    const auto unfinished = progress_.remove(parts);
    stats_.abandoned_on_revoke += unfinished;
    log::warn(options_.who + ".revoked", {{"partitions", names(parts)}, {"lost", "true"}, {"unfinished", std::to_string(unfinished)}});
    return;
  }
  drain(parts);
}

}  // namespace sb
