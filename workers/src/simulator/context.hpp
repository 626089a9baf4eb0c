#pragma once
// What the simulator's shapes share: the configuration, the callback sender, the records tests
// read back, the auth store and the server's timers. Owned by Simulator::Impl.
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
};

}  // namespace sb::sim
