#pragma once
// Small helpers every part of the simulator uses: JSON replies, randomness, ids, clocks.
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "switchboard/core/config.hpp"
#include "switchboard/core/http_server.hpp"

namespace sb::sim {

using json = nlohmann::json;

http::Response reply(int status, const json& body);
// Parses a request body that must be a JSON object; nullopt (and *error set) otherwise.
std::optional<json> parse_object(const std::string& body, std::string* error);
// The string member `key` of `o`, or nullopt when absent or not a string.
std::optional<std::string> string_field(const json& o, const char* key);

int64_t now_ms();
int64_t now_s();
// Uniform in [0, n).
uint64_t random_below(uint64_t n);
std::string random_hex(std::size_t chars, bool upper);
std::string random_digits(std::size_t n);
std::string random_alnum(std::size_t n);
// 26 characters of Crockford base32: 48-bit millisecond time + 80 random bits (a ULID's layout).
std::string ulid_like();
bool all_digits(const std::string& s);
std::string percent_decode(const std::string& s);
std::string percent_encode(const std::string& s);

// The configured send latency of one request (latency_ms + jitter) and whether this request is
// one of the simulated failures (failure_rate).
int send_latency_ms(const SimulatorConfig& config);
bool simulated_failure(const SimulatorConfig& config);

// Runs fn after a delay on the server's timers (no thread held); dropped once the server stops.
using Schedule = std::function<void(std::chrono::milliseconds, std::function<void()>)>;

}  // namespace sb::sim
