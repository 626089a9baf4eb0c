#pragma once
// Configuration: plain structs with in-class defaults, filled once at start-up from a YAML file
// (config/switchboard.yaml documents every key) and SWITCHBOARD_<SECTION>_<KEY> env overrides.
// Unknown keys and bad values throw ConfigError naming the key and what is allowed.
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sb {

struct KafkaConfig {
  std::string brokers = "127.0.0.1:9092";
  // Prepended to every topic and consumer-group name: lets several environments (or tests)
  // share one cluster without seeing each other's records.
  std::string topic_prefix;
  int partitions = 12;
  int replication_factor = 1;
  // Raw librdkafka properties applied to every client after ours (escape hatch, e.g. SASL).
  std::map<std::string, std::string> librdkafka;
};

struct PostgresConfig {
  std::string url = "postgresql://switchboard:switchboard@127.0.0.1:5432/switchboard";
  int pool_size = 4;
  int statement_timeout_ms = 10000;
};

struct RedisConfig {
  std::string url = "redis://127.0.0.1:6379";
  int timeout_ms = 2000;
};

struct LogConfig {
  std::string level = "info";    // trace|debug|info|warn|error
  std::string format = "json";   // json|text
};

struct IntakeConfig {
  std::string listen = "127.0.0.1:8080";
  int io_threads = 2;                // event loop threads serving every connection (epoll)
  int blocking_threads = 8;          // pool for handlers that wait on PostgreSQL
  int idle_timeout_ms = 30000;       // an idle keep-alive connection is closed after this
  int max_body_bytes = 64 * 1024;
  int publish_timeout_ms = 5000;     // broker ack deadline before answering 503
  int retry_after_s = 2;
  int auth_cache_ttl_ms = 30000;
  // Brute force: a source address presenting more than auth_failure_limit unknown API keys
  // within auth_failure_window_s gets 429 for auth_block_s (known keys still pass). 0 = off.
  int auth_failure_limit = 20;
  int auth_failure_window_s = 60;
  int auth_block_s = 300;
  int insert_batch_max = 500;
  int insert_linger_ms = 2;
  int insert_writers = 2;            // group-commit batches in flight at once
};

struct WorkerConfig {
  int max_in_flight = 1000;          // provider calls in flight per process (across sessions)
  int max_buffered = 10000;          // records held per process before partitions are paused
  int commit_interval_ms = 1000;
  int revoke_drain_timeout_ms = 10000;
  int provider_attempts = 3;         // tries for retryable provider errors before message.failed
  int provider_backoff_ms = 200;
  int session_rate_per_s = 0;        // Redis-enforced sends/s per session, 0 = unlimited
  int result_batch_max = 500;        // claims / outcomes per PostgreSQL statement
  int result_linger_ms = 0;          // extra wait to fill a batch (0: whatever queued meanwhile)
  // A command found 'sending' without an outcome (its worker died mid-call) that the provider
  // can't confirm: fail = message.failed with reason "uncertain"; resend = send it again.
  std::string on_uncertain = "fail";
  // /health, /health/ready and /metrics of each worker process ("host:port"; empty: off).
  std::string ops_listen;
};

struct ProviderConfig {
  std::string url = "http://127.0.0.1:8090";
  int timeout_ms = 10000;
  // Ask the provider (GET /v1/messages/{id}) whether an interrupted send went out, before
  // deciding per worker.on_uncertain. Off for providers without that lookup.
  bool reconcile = true;
};

struct SimulatorConfig {
  std::string listen = "127.0.0.1:8090";
  int latency_ms = 5;
  int latency_jitter_ms = 5;
  double failure_rate = 0.0;
  bool dedupe = true;                // false: every request is "sent" again (like Cloud API/WAHA)
};

struct WebhooksConfig {
  // Comma-separated CIDRs a webhook URL may resolve to despite the SSRF guard (which refuses
  // loopback, private, link-local and metadata addresses). The dev config allows loopback.
  std::string allow_cidrs;
  std::vector<std::string> allowed_cidrs() const;  // allow_cidrs split at commas, trimmed
  // After a secret rotation the previous secret keeps signing (a second signature) this long.
  int rotation_window_s = 86400;

  // Dispatcher (`switchboard webhooks`).
  int timeout_ms = 15000;                 // whole attempt, connect included
  int connect_timeout_ms = 5000;
  std::string retry_schedule = "5s,5m,30m,2h,5h,10h,10h";  // waits before retry 1, 2, …
  double retry_jitter = 0.2;              // ±20 %
  int max_in_flight = 2000;               // concurrent requests per process (one curl multi handle)
  int max_in_flight_per_endpoint = 16;    // one endpoint never takes more than this
  int max_queued_per_endpoint = 1000;     // waiting behind the cap; beyond, parked in the schedule
  int max_buffered = 20000;               // events held per process before partitions are paused
  int commit_interval_ms = 1000;
  int record_linger_ms = 20;              // outcome batching before one PostgreSQL transaction
  int retry_poll_interval_ms = 500;       // how often due retries are claimed
  int retry_claim_batch = 500;
  int endpoint_cache_ms = 2000;           // a tenant's endpoints are re-read at most this often
  int breaker_window = 20;                // circuit breaker: recent attempts judged
  int breaker_min_attempts = 10;
  double breaker_failure_ratio = 0.8;
  int breaker_cool_down_s = 30;           // first pause; doubles while probes fail
  int breaker_max_cool_down_s = 600;
  int disable_after_s = 5 * 86400;        // failing without a success this long disables the endpoint
  int event_retention_days = 30;          // events (replay / redeliver) and attempt log kept this long
  int replay_max_events = 10000;          // one replay request schedules at most this many
  std::string ops_listen;                 // /health, /health/ready, /metrics ("host:port"; empty: off)
};

struct Config {
  KafkaConfig kafka;
  PostgresConfig postgres;
  RedisConfig redis;
  LogConfig log;
  IntakeConfig intake;
  WorkerConfig worker;
  ProviderConfig provider;
  SimulatorConfig simulator;
  WebhooksConfig webhooks;
  std::string schemas_dir = SWITCHBOARD_DEFAULT_SCHEMAS_DIR;

  // Full topic / group names, with the prefix applied.
  std::string topic(const std::string& base) const { return kafka.topic_prefix + base; }
};

using EnvLookup = std::optional<std::string> (*)(const std::string& name);
std::optional<std::string> process_env(const std::string& name);

// Parses YAML text (origin names the file in error messages) then applies env overrides.
Config parse_config(const std::string& yaml_text, const std::string& origin,
                    EnvLookup env = &process_env);
// Reads the file; an empty path means "defaults + env only".
Config load_config(const std::string& path, EnvLookup env = &process_env);

}  // namespace sb
