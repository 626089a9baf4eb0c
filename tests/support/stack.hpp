#pragma once
// Integration fixture: a private slice of the real servers started by scripts/test.
// Each TestStack gets its own topic/group prefix on the shared Kafka broker and its own fresh
// PostgreSQL database, so test cases never see each other's records or rows.
#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "switchboard/core/config.hpp"
#include "switchboard/core/kafka.hpp"

namespace sbtest {

std::string require_env(const char* name);

// Every message's status in the stack's database, by id (PostgreSQL, the system of record).
std::map<std::string, std::string> message_statuses(const sb::Config& config);

// Wall-clock milliseconds since the epoch (the clock PostgreSQL rows and RFC 3339 times use).
inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
int free_port();

// A `switchboard` child process; output goes to a log file. Killed (SIGKILL) if still alive
// when destroyed.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& log_path);
  ~Child();
  Child(Child&& o) noexcept : pid_(o.pid_), log_path_(std::move(o.log_path_)) { o.pid_ = -1; }
  void signal(int sig);
  int wait(int timeout_ms);  // exit status, or -1 if still running at the deadline
  bool alive();
  std::string log() const;
  const std::string& log_path() const { return log_path_; }
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  std::string log_path_;
};

struct TenantInfo {
  std::string id, name, api_key;
};

class TestStack {
 public:
  explicit TestStack(const std::string& name, int partitions = 6);
  ~TestStack();

  sb::Config config;
  std::string config_path;  // YAML for child processes
  std::string log_dir;

  TenantInfo create_tenant(const std::string& name, const std::vector<std::string>& sessions = {"main"});
  // Runs `switchboard --config <ours> args...` in the background.
  Child spawn(const std::string& label, const std::vector<std::string>& args);
  // Rewrites the child config after changing `config` (ports, simulator settings…).
  void write_config();
  // Writes `config` as log_dir/<file> (another process's own config: a second simulator node);
  // returns its path. config_path is left as it is.
  std::string write_config_as(const std::string& file);
  Child spawn_with(const std::string& label, const std::string& config_file, const std::vector<std::string>& args);
  std::string topic(const std::string& base) const { return config.topic(base); }

 private:
  std::string db_name_;
  std::string admin_url_;
};

// Reads a topic from the beginning, all partitions, without a consumer group.
class TopicReader {
 public:
  TopicReader(const sb::Config& config, const std::string& topic);
  // Polls until pred(all records so far) is true or the timeout passes; returns pred's last value.
  bool read_until(const std::function<bool(const std::vector<sb::kafka::MessagePtr>&)>& pred, int timeout_ms);
  const std::vector<sb::kafka::MessagePtr>& records() const { return records_; }

 private:
  sb::kafka::HandlePtr rk_;
  std::vector<sb::kafka::MessagePtr> records_;
};

// Records a secret a test minted (API key, webhook secret) for the log scan
// (tests/security/scan_logs), under $SWITCHBOARD_TEST_LOG_DIR/minted/. Returns it.
const std::string& minted(const std::string& secret);

// Polls until f() is true or the timeout passes.
bool eventually(const std::function<bool()>& f, int timeout_ms, int step_ms = 50);

httplib::Headers bearer(const std::string& key);

}  // namespace sbtest
