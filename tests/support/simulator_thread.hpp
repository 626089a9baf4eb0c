#pragma once
// An in-process `switchboard simulator` serving on its own thread for the lifetime of the
// object (unit and integration tests; header-only so both test binaries can use it).
#include <catch2/catch.hpp>

#include <exception>
#include <string>
#include <thread>

#include "switchboard/core/config.hpp"
#include "switchboard/workers/simulator.hpp"

namespace sbtest {

class SimulatorThread {
 public:
  explicit SimulatorThread(const sb::SimulatorConfig& config) : sim_(config) {
    thread_ = std::thread([this] {
      try {
        sim_.run();
      } catch (...) {
        error_ = std::current_exception();
      }
    });
    if (!sim_.wait_until_ready(10000)) {
      stop();
      if (error_) std::rethrow_exception(error_);
      FAIL("simulator did not start");
    }
  }
  ~SimulatorThread() { stop(); }
  SimulatorThread(const SimulatorThread&) = delete;
  SimulatorThread& operator=(const SimulatorThread&) = delete;
  void stop() {
    sim_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return sim_.port(); }
  std::string url(const std::string& path = "") const { return "http://127.0.0.1:" + std::to_string(sim_.port()) + path; }

 private:
  sb::Simulator sim_;
  std::thread thread_;
  std::exception_ptr error_;
};

}  // namespace sbtest
