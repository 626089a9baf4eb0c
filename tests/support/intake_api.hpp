#pragma once
// Integration helpers for the intake's HTTP API: an in-process IntakeServer for a test's
// lifetime, and one call() that sends a Bearer-authenticated request and parses the JSON reply.
#include <catch2/catch.hpp>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "stack.hpp"
#include "switchboard/producers/intake_server.hpp"

namespace sbtest {

struct InProcessIntake {
  sb::IntakeServer server;
  std::thread thread;
  explicit InProcessIntake(const sb::Config& c) : server(c), thread([this] { server.run(); }) {
    REQUIRE(server.wait_until_ready(10000));
  }
  ~InProcessIntake() {
    server.stop();
    thread.join();
  }
};

struct Reply {
  int status;
  nlohmann::json body;
};

inline Reply call(httplib::Client& http, const std::string& method, const std::string& path, const std::string& key,
                  const std::string& body = "") {
  httplib::Result r = method == "POST"     ? http.Post(path.c_str(), bearer(key), body, "application/json")
                      : method == "PATCH"  ? http.Patch(path.c_str(), bearer(key), body, "application/json")
                      : method == "DELETE" ? http.Delete(path.c_str(), bearer(key))
                                           : http.Get(path.c_str(), bearer(key));
  REQUIRE(r);
  return {r->status, r->body.empty() ? nlohmann::json() : nlohmann::json::parse(r->body)};
}

}  // namespace sbtest
