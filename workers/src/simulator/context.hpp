#pragma once
// What the simulator's shapes share: the configuration, the callback sender, the records tests
// read back, the auth store and the server's timers. Owned by Simulator::Impl.
#include <atomic>

#include "auth_store.hpp"
#include "callback_sender.hpp"
#include "common.hpp"
#include "records.hpp"

namespace sb::sim {

struct Context {
  const SimulatorConfig& config;
  CallbackSender& callbacks;
  SendLog& sends;
  SessionLifetimes& lifetimes;
  AuthStore& auth;
  Schedule after;
  // POST /sim/hang: until then (ms since the epoch) every send and lookup first waits for it, a
  // provider hanging past its clients' timeouts (the chaos harness plays it).
  std::atomic<int64_t> hang_until_ms{0};
  int hang_left_ms() const {
    const int64_t left = hang_until_ms.load() - now_ms();
    return left > 0 ? static_cast<int>(left) : 0;
  }
};

}  // namespace sb::sim
