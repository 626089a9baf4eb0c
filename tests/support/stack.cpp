#include "stack.hpp"

#include "switchboard/core/secret_box.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <cerrno>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>

#include "switchboard/core/command.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/tenant_store.hpp"

extern char** environ;

namespace sbtest {

std::map<std::string, std::string> message_statuses(const sb::Config& config) {
  sb::pg::Pool pool(config.postgres);
  return pool.run([](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    std::map<std::string, std::string> out;
    for (const auto& row : tx.exec("SELECT id::text, status FROM messages")) out[row[0].as<std::string>()] = row[1].as<std::string>();
    return out;
  });
}

namespace fs = std::filesystem;

std::string require_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) FAIL(std::string(name) + " is not set: run integration tests through scripts/test");
  return v;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool eventually(const std::function<bool()>& f, int timeout_ms, int step_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
  }
  return f();
}

httplib::Headers bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

// ------------------------------------------------------------------ Child

Child::Child(const std::vector<std::string>& args, const std::string& log_path) : log_path_(log_path) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // Children get their settings from the config file only: drop SWITCHBOARD_* overrides that a
  // developer's shell (e.g. a sourced dev.env) might carry.
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("SWITCHBOARD_", 0) != 0) env_store.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) FAIL("cannot open " + log_path + ": " + std::strerror(errno));
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec. The child dies with the test (a failed REQUIRE
    // that aborts runs no destructor): no role outlives its test, holding ports and servers.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  const int err = errno;
  ::close(log_fd);
  if (pid_ < 0) FAIL("cannot start " + args[0] + ": " + std::strerror(err));
}

Child::~Child() {
  if (pid_ > 0 && alive()) {
    ::kill(pid_, SIGKILL);
    wait(5000);
  }
}

void Child::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool Child::alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  const int r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return r == 0;
}

int Child::wait(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (pid_ > 0) {
    int status = 0;
    const int r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

std::string Child::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ------------------------------------------------------------------ TestStack

namespace {
std::string random_suffix() {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  const char* alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (int i = 0; i < 8; ++i) s += alphabet[rng() % 36];
  return s;
}

// Replaces the database name at the end of a postgresql:// URL.
std::string with_database(const std::string& url, const std::string& db) {
  const auto slash = url.rfind('/');
  const auto q = url.find('?', slash);
  return url.substr(0, slash + 1) + db + (q == std::string::npos ? "" : url.substr(q));
}
}  // namespace

TestStack::TestStack(const std::string& name, int partitions) {
  const auto suffix = random_suffix();
  admin_url_ = require_env("SWITCHBOARD_TEST_POSTGRES_URL");
  db_name_ = "sb_test_" + suffix;
  const char* logs = std::getenv("SWITCHBOARD_TEST_LOG_DIR");
  log_dir = std::string(logs && *logs ? logs : "/tmp/switchboard-test-logs") + "/" + name + "-" + suffix;
  fs::create_directories(log_dir);

  config.kafka.brokers = require_env("SWITCHBOARD_TEST_KAFKA_BROKERS");
  config.kafka.topic_prefix = "t" + suffix + ".";
  config.kafka.partitions = partitions;
  config.kafka.replication_factor = 1;
  // Faster failover than production defaults, so SIGKILL tests don't wait long for the group.
  config.kafka.librdkafka["session.timeout.ms"] = "6000";
  config.redis.url = require_env("SWITCHBOARD_TEST_REDIS_URL");
  config.secrets.key = sb::SecretBox::new_key();  // a fresh key per stack: credentials at rest are sealed
  config.log.format = "text";
  config.log.level = "info";
  config.worker.revoke_drain_timeout_ms = 5000;
  config.worker.max_in_flight = 32;

  {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE DATABASE " + db_name_);
  }
  config.postgres.url = with_database(admin_url_, db_name_);
  config.postgres.pool_size = 8;
  sb::pg::Pool pool(config.postgres);
  sb::pg::migrate(pool, config.schemas_dir + "/sql");

  std::vector<sb::kafka::TopicSpec> topics;
  for (const char* lane : sb::kLanes) topics.push_back({topic(sb::lane_topic_base(lane)), partitions, 1, {}});
  topics.push_back({topic("sb.events"), partitions, 1, {}});
  topics.push_back({topic("sb.dlq"), partitions, 1, {}});
  topics.push_back({topic("sb.webhooks.dlq"), partitions, 1, {}});
  topics.push_back({topic("sb.callbacks"), partitions, 1, {}});
  sb::kafka::ensure_topics(config.kafka, topics);
  write_config();
}

TestStack::~TestStack() {
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + db_name_ + " WITH (FORCE)");
  } catch (const std::exception&) {
    // Best effort: the test database is thrown away with the server anyway.
  }
}

void TestStack::write_config() { config_path = write_config_as("switchboard.yaml"); }

std::string TestStack::write_config_as(const std::string& file) {
  const std::string path = log_dir + "/" + file;
  std::ofstream out(path);
  const auto& c = config;
  out << "kafka:\n  brokers: \"" << c.kafka.brokers << "\"\n  topic_prefix: \"" << c.kafka.topic_prefix
      << "\"\n  partitions: " << c.kafka.partitions << "\n  librdkafka:\n";
  for (const auto& [k, v] : c.kafka.librdkafka) out << "    " << k << ": \"" << v << "\"\n";
  out << "postgres:\n  url: \"" << c.postgres.url << "\"\n  pool_size: " << c.postgres.pool_size << "\n"
      << "redis:\n  url: \"" << c.redis.url << "\"\n"
      << "log:\n  level: " << c.log.level << "\n  format: " << c.log.format << "\n"
      << "intake:\n  listen: \"" << c.intake.listen << "\"\n  io_threads: " << c.intake.io_threads << "\n"
      << "  public_url: \"" << c.intake.public_url << "\"\n  admin_key: \"" << c.intake.admin_key << "\"\n"
      << "  publish_timeout_ms: " << c.intake.publish_timeout_ms << "\n"
      << "  cors_allowed_origins: \"" << c.intake.cors_allowed_origins << "\"\n"
      << "  auth_failure_limit: " << c.intake.auth_failure_limit << "\n  auth_failure_window_s: "
      << c.intake.auth_failure_window_s << "\n  auth_block_s: " << c.intake.auth_block_s << "\n"
      << "stream:\n  buffer_events: " << c.stream.buffer_events << "\n  heartbeat_ms: " << c.stream.heartbeat_ms
      << "\n  max_connections_per_tenant: " << c.stream.max_connections_per_tenant
      << "\n  lease_ttl_ms: " << c.stream.lease_ttl_ms << "\n"
      << "worker:\n  max_in_flight: " << c.worker.max_in_flight << "\n  revoke_drain_timeout_ms: "
      << c.worker.revoke_drain_timeout_ms << "\n  session_rate_per_s: " << c.worker.session_rate_per_s
      << "\n  commit_interval_ms: " << c.worker.commit_interval_ms << "\n  provider_attempts: " << c.worker.provider_attempts
      << "\n  provider_backoff_ms: " << c.worker.provider_backoff_ms << "\n  on_uncertain: " << c.worker.on_uncertain
      << "\n  ops_listen: \"" << c.worker.ops_listen << "\"\n"
      << "provider:\n  url: \"" << c.provider.url << "\"\n  timeout_ms: " << c.provider.timeout_ms
      << "\n  reconcile: " << (c.provider.reconcile ? "true" : "false") << "\n"
      << "simulator:\n  listen: \"" << c.simulator.listen << "\"\n  latency_ms: " << c.simulator.latency_ms
      << "\n  latency_jitter_ms: " << c.simulator.latency_jitter_ms << "\n  failure_rate: " << c.simulator.failure_rate
      << "\n  dedupe: " << (c.simulator.dedupe ? "true" : "false") << "\n  name: \"" << c.simulator.name
      << "\"\n  auth_store: \"" << c.simulator.auth_store << "\"\n  delivered_delay_ms: " << c.simulator.delivered_delay_ms
      << "\n  read_delay_ms: " << c.simulator.read_delay_ms << "\n  receipts_before_reply_ms: " << c.simulator.receipts_before_reply_ms
      << "\n  engine:\n    api_key: \"" << c.simulator.engine.api_key
      << "\"\n    start_delay_ms: " << c.simulator.engine.start_delay_ms << "\n    qr_rotate_ms: " << c.simulator.engine.qr_rotate_ms
      << "\n  cloud_api:\n    access_token: \"" << c.simulator.cloud_api.access_token << "\"\n    app_secret: \""
      << c.simulator.cloud_api.app_secret << "\"\n    verify_token: \"" << c.simulator.cloud_api.verify_token
      << "\"\n    webhook_url: \"" << c.simulator.cloud_api.webhook_url << "\"\n    rate_per_s: " << c.simulator.cloud_api.rate_per_s
      << "\n";
  const auto& w = c.webhooks;
  out << "webhooks:\n  allow_cidrs: \"" << w.allow_cidrs << "\"\n  rotation_window_s: " << w.rotation_window_s
      << "\n  timeout_ms: " << w.timeout_ms << "\n  connect_timeout_ms: " << w.connect_timeout_ms
      << "\n  retry_schedule: \"" << w.retry_schedule << "\"\n  retry_jitter: " << w.retry_jitter
      << "\n  max_in_flight: " << w.max_in_flight << "\n  max_in_flight_per_endpoint: " << w.max_in_flight_per_endpoint
      << "\n  max_queued_per_endpoint: " << w.max_queued_per_endpoint << "\n  max_buffered: " << w.max_buffered
      << "\n  commit_interval_ms: " << w.commit_interval_ms << "\n  record_linger_ms: " << w.record_linger_ms
      << "\n  retry_poll_interval_ms: " << w.retry_poll_interval_ms << "\n  retry_claim_batch: " << w.retry_claim_batch
      << "\n  endpoint_cache_ms: " << w.endpoint_cache_ms << "\n  breaker_window: " << w.breaker_window
      << "\n  breaker_min_attempts: " << w.breaker_min_attempts << "\n  breaker_failure_ratio: " << w.breaker_failure_ratio
      << "\n  breaker_cool_down_s: " << w.breaker_cool_down_s << "\n  breaker_max_cool_down_s: " << w.breaker_max_cool_down_s
      << "\n  disable_after_s: " << w.disable_after_s << "\n  event_retention_days: " << w.event_retention_days
      << "\n  replay_max_events: " << w.replay_max_events << "\n  ops_listen: \"" << w.ops_listen << "\"\n";
  out << "secrets:\n  key: \"" << c.secrets.key << "\"\n"
      << "sessions:\n  not_working: " << c.sessions.not_working << "\n  hold_max_s: " << c.sessions.hold_max_s
      << "\n  hold_poll_ms: " << c.sessions.hold_poll_ms << "\n"
      << "cloud_api:\n  graph_url: \"" << c.cloud_api.graph_url << "\"\n  version: \"" << c.cloud_api.version
      << "\"\n  app_secret: \"" << c.cloud_api.app_secret << "\"\n  verify_token: \"" << c.cloud_api.verify_token << "\"\n"
      << "callbacks:\n  unmatched_retry_s: " << c.callbacks.unmatched_retry_s << "\n  ops_listen: \"" << c.callbacks.ops_listen << "\"\n"
      << "engine:\n  default_node: \"" << c.engine.default_node << "\"\n  timeout_ms: " << c.engine.timeout_ms << "\n";
  if (!c.engine.nodes.empty()) {
    out << "  nodes:\n";
    for (const auto& [name, n] : c.engine.nodes)
      out << "    " << name << ":\n      url: \"" << n.url << "\"\n      api_key: \"" << n.api_key
          << "\"\n      webhook_hmac_key: \"" << n.webhook_hmac_key << "\"\n      capacity: " << n.capacity
          << "\n      storage_group: \"" << n.storage_group << "\"\n";
  }
  {
    const auto& p = c.pacing;
    out << "pacing:\n  enabled: " << (p.enabled ? "true" : "false") << "\n  min_gap_ms: " << p.min_gap_ms
        << "\n  jitter_ms: " << p.jitter_ms << "\n  per_minute: " << p.per_minute << "\n  per_hour: " << p.per_hour
        << "\n  warmup_daily_caps: \"" << p.warmup_daily_caps << "\"\n  cloud_api_number_per_s: " << p.cloud_api_number_per_s
        << "\n  cloud_api_pair_gap_ms: " << p.cloud_api_pair_gap_ms << "\n  throttle_backoff_ms: " << p.throttle_backoff_ms
        << "\n  pause_cool_down_s: " << p.pause_cool_down_s << "\n  policy_cache_ms: " << p.policy_cache_ms
        << "\n  resume_poll_ms: " << p.resume_poll_ms << "\n";
  }
  const auto& p = c.placer;
  out << "placer:\n  probe_interval_ms: " << p.probe_interval_ms << "\n  probe_timeout_ms: " << p.probe_timeout_ms
      << "\n  failure_threshold: " << p.failure_threshold << "\n  lease_ttl_ms: " << p.lease_ttl_ms
      << "\n  max_starts_per_node: " << p.max_starts_per_node << "\n  start_stagger_ms: " << p.start_stagger_ms
      << "\n  start_jitter: " << p.start_jitter << "\n  start_timeout_ms: " << p.start_timeout_ms << "\n";
  return path;
}

TenantInfo TestStack::create_tenant(const std::string& name, const std::vector<std::string>& sessions) {
  sb::pg::Pool pool(config.postgres);
  sb::TenantStore tenants(pool);
  auto [t, key] = tenants.create(name);
  for (const auto& s : sessions) tenants.create_session(t.id, s);
  return {t.id, t.name, minted(key)};
}

const std::string& minted(const std::string& secret) {
  const char* logs = std::getenv("SWITCHBOARD_TEST_LOG_DIR");
  const fs::path dir = fs::path(logs && *logs ? logs : "/tmp/switchboard-test-logs") / "minted";
  fs::create_directories(dir);
  std::ofstream(dir / (std::to_string(getpid()) + ".txt"), std::ios::app) << secret << "\n";
  return secret;
}

Child TestStack::spawn(const std::string& label, const std::vector<std::string>& args) { return spawn_with(label, config_path, args); }

Child TestStack::spawn_with(const std::string& label, const std::string& config_file, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {require_env("SWITCHBOARD_BIN"), "--config", config_file};
  argv.insert(argv.end(), args.begin(), args.end());
  return Child(argv, log_dir + "/" + label + ".log");
}

// ------------------------------------------------------------------ TopicReader

TopicReader::TopicReader(const sb::Config& config, const std::string& topic) {
  auto conf = sb::kafka::make_conf(config.kafka, {{"group.id", "unused-reader"}, {"enable.auto.commit", "false"}});
  char errstr[512];
  rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.release(), errstr, sizeof errstr));
  REQUIRE(rk_);
  const int n = sb::kafka::partition_count(rk_.get(), topic);
  sb::kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(n));
  for (int p = 0; p < n; ++p)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  REQUIRE(rd_kafka_assign(rk_.get(), list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

bool TopicReader::read_until(const std::function<bool(const std::vector<sb::kafka::MessagePtr>&)>& pred, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred(records_)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    sb::kafka::MessagePtr m(rd_kafka_consumer_poll(rk_.get(), 100));
    if (m && !m->err) records_.push_back(std::move(m));
  }
  return true;
}

}  // namespace sbtest
