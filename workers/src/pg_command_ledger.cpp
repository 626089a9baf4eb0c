#include "switchboard/workers/pg_command_ledger.hpp"

#include <set>
#include <unordered_map>

#include "switchboard/core/log.hpp"

namespace sb {

PgCommandLedger::PgCommandLedger(MessageStore& store, Options options)
    : store_(store), options_(std::move(options)), thread_([this] { loop(); }) {}

PgCommandLedger::~PgCommandLedger() {
  stopper_.request_stop();
  cv_.notify_all();
  thread_.join();
}

void PgCommandLedger::claim(const SendCommand& command, Claimed done) {
  {
    std::lock_guard lock(mu_);
    claims_.push_back({command, std::move(done)});
  }
  cv_.notify_one();
}

void PgCommandLedger::record(const MessageOutcome& outcome, OutcomeRecorded done) {
  {
    std::lock_guard lock(mu_);
    records_.push_back({outcome, std::move(done)});
  }
  cv_.notify_one();
}

void PgCommandLedger::unclaim(const std::vector<std::string>& ids, Recorded done) {
  {
    std::lock_guard lock(mu_);
    unclaims_.emplace_back(ids, std::move(done));
  }
  cv_.notify_one();
}

void PgCommandLedger::loop() {
  while (!stopper_.stopping()) {
    std::vector<PendingClaim> claims;
    std::vector<PendingRecord> records;
    std::deque<std::pair<std::vector<std::string>, Recorded>> unclaims;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopper_.stopping() || !claims_.empty() || !records_.empty() || !unclaims_.empty(); });
      if (stopper_.stopping()) return;
      if (options_.linger_ms > 0) {
        cv_.wait_for(lock, std::chrono::milliseconds(options_.linger_ms), [&] {
          return stopper_.stopping() || claims_.size() + records_.size() >= options_.batch_max;
        });
      }
      while (!claims_.empty() && claims.size() < options_.batch_max) {
        claims.push_back(std::move(claims_.front()));
        claims_.pop_front();
      }
      while (!records_.empty() && records.size() < options_.batch_max) {
        records.push_back(std::move(records_.front()));
        records_.pop_front();
      }
      unclaims.swap(unclaims_);
    }
    // Rare (revokes): one statement for all of them.
    if (!unclaims.empty()) write_unclaims(unclaims);
    // Outcomes first: they free 'sending' marks a claim in the same turn may be waiting on.
    if (!records.empty()) write_records(records);
    if (!claims.empty()) write_claims(claims);
  }
}

template <typename Write, typename Fail>
void PgCommandLedger::run_split(std::size_t begin, std::size_t end, Write& write, Fail& fail) {
  for (int attempt = 1;; ++attempt) {
    try {
      write(begin, end);
      return;
    } catch (const std::exception& e) {
      const auto d = options_.retry.after(e, attempt, rng_);
      if (d.retry) {
        ++counters_.outages;
        log::warn("ledger.unavailable", {{"rows", std::to_string(end - begin)}, {"attempt", std::to_string(attempt)},
                                         {"delay_ms", std::to_string(d.delay.count())}, {"detail", e.what()}});
        if (!stopper_.sleep_for(d.delay)) return;  // stopping: dropped, redone by the next owner
        continue;
      }
      if (end - begin == 1) {
        ++counters_.poison;
        log::error("ledger.row_refused", {{"detail", e.what()}});
        fail(begin, std::current_exception());
        return;
      }
      const std::size_t mid = begin + (end - begin) / 2;  // isolate the rows PostgreSQL refuses
      run_split(begin, mid, write, fail);
      run_split(mid, end, write, fail);
      return;
    }
  }
}

void PgCommandLedger::write_claims(std::vector<PendingClaim>& batch) {
  // Ids must be distinct within a statement; a repeat (never expected: one session runs one
  // command at a time) is answered as in progress, so it is never sent twice.
  std::unordered_map<std::string, std::size_t> first;
  std::vector<std::size_t> unique;
  std::vector<std::size_t> repeats;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (first.emplace(batch[i].command.id, i).second) unique.push_back(i);
    else repeats.push_back(i);
  }
  std::vector<SendCommand> commands;
  for (auto i : unique) commands.push_back(batch[i].command);
  std::vector<SendClaim> results(commands.size());
  std::vector<std::exception_ptr> errors(commands.size());
  auto write = [&](std::size_t b, std::size_t e) {
    std::vector<SendCommand> part(commands.begin() + b, commands.begin() + e);
    auto r = store_.claim_for_send(part);
    ++counters_.claim_statements;
    for (std::size_t k = 0; k < r.size(); ++k) results[b + k] = r[k];
  };
  auto fail = [&](std::size_t i, std::exception_ptr err) { errors[i] = err; };
  run_split(0, commands.size(), write, fail);
  if (stopper_.stopping()) return;
  for (std::size_t k = 0; k < unique.size(); ++k) batch[unique[k]].done(results[k], errors[k]);
  for (auto i : repeats) {
    SendClaim c;
    c.status = SendClaim::Status::InProgress;
    c.known.status = "sending";
    batch[i].done(c, nullptr);
  }
}

void PgCommandLedger::write_unclaims(std::deque<std::pair<std::vector<std::string>, Recorded>>& batch) {
  std::vector<std::string> ids;
  for (const auto& [part, _] : batch) ids.insert(ids.end(), part.begin(), part.end());
  std::exception_ptr error;
  auto write = [&](std::size_t, std::size_t) { store_.release_claims(ids); };
  auto fail = [&](std::size_t, std::exception_ptr err) { error = err; };
  run_split(0, 1, write, fail);  // all or nothing: an UPDATE of our own marks has no bad rows
  if (stopper_.stopping()) return;
  for (auto& [_, done] : batch) done(error);
}

void PgCommandLedger::write_records(std::vector<PendingRecord>& batch) {
  std::vector<RecordResult> results(batch.size());
  std::vector<std::exception_ptr> errors(batch.size());
  auto write = [&](std::size_t b, std::size_t e) {
    std::vector<MessageOutcome> part;
    for (std::size_t i = b; i < e; ++i) part.push_back(batch[i].outcome);
    const auto applied = store_.record_outcomes(part);
    ++counters_.record_statements;
    // A row left as it was (rare) is read back: the same outcome is ours from an attempt that
    // committed before an outage hid its answer; another one concluded the message first.
    std::vector<std::size_t> refused;
    std::set<std::string> first;
    for (std::size_t i = b; i < e; ++i) {
      const auto& id = batch[i].outcome.id;
      const bool written = first.insert(id).second && applied.count(id);  // a repeated id: its first is written
      if (!written) refused.push_back(i);
    }
    if (refused.empty()) return;
    std::vector<std::string> ids;
    for (auto i : refused) ids.push_back(batch[i].outcome.id);
    const auto stored = store_.lookup(ids);
    for (auto i : refused) {
      const auto& o = batch[i].outcome;
      auto it = stored.find(o.id);
      if (it == stored.end()) continue;  // not reachable: the upsert wrote the row or found it
      const auto& k = it->second;
      const bool same = k.status == o.status && k.error == o.error && k.provider_message_id == o.provider_message_id;
      results[i] = same ? RecordResult{} : RecordResult{true, k.status};
    }
  };
  auto fail = [&](std::size_t i, std::exception_ptr err) { errors[i] = err; };
  run_split(0, batch.size(), write, fail);
  if (stopper_.stopping()) return;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (results[i].superseded) ++counters_.superseded;
    batch[i].done(results[i], errors[i]);
  }
}

}  // namespace sb
