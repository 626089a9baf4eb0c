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
  std::string callback_base() const { return public_url.empty() ? "http://" + listen : public_url; }
  std::string listen = "127.0.0.1:8080";
  // How providers reach this intake for callbacks (engine webhooks point at
  // <public_url>/v1/providers/engine/<node>/webhook). Empty: http://<listen>.
  std::string public_url;
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
  // Bearer key of the operator routes (/v1/admin/*, e.g. engine nodes). Empty: those routes
  // answer 404 (off).
  std::string admin_key;
  // Browser pages of these origins may call the /v1 routes (CORS: preflights answered, the
  // origin echoed in Access-Control-Allow-Origin). Comma-separated scheme://host[:port], or *
  // for any. Empty: no CORS headers at all (browsers refuse cross-origin reads).
  std::string cors_allowed_origins;
  std::vector<std::string> cors_origins() const;  // split, trimmed, validated (ConfigError)
};

// The intake's real-time event stream (GET /v1/events/stream and /v1/events/ws).
struct StreamConfig {
  int buffer_events = 1000;               // events waiting for one slow client before it is cut off
  int heartbeat_ms = 15000;               // idle streams get an SSE comment / WebSocket ping this often
  // Open streams per tenant across every intake replica (more: 429). Held by leases in Redis;
  // while Redis is unreachable, per intake process.
  int max_connections_per_tenant = 1000;
  // A replica refreshes its streams' leases every ttl/3; one that dies frees its places after ttl.
  int lease_ttl_ms = 30000;
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

// `switchboard simulator`: the legacy /v1/messages API plus the WAHA (engine) and Graph (Cloud
// API) shapes; see workers/include/switchboard/workers/simulator.hpp.
struct SimulatorEngineConfig {
  std::string api_key;        // non-empty: every /api/* request needs X-Api-Key
  int start_delay_ms = 100;   // STARTING lasts this long
  int qr_rotate_ms = 20000;   // a new QR value (and a session.status SCAN_QR_CODE) this often
};

struct SimulatorCloudApiConfig {
  std::string access_token;   // non-empty: the bearer token must match; empty: any non-empty token
  std::string app_secret;     // signs callbacks (X-Hub-Signature-256)
  std::string verify_token;   // sent in the hub.challenge handshake
  std::string webhook_url;    // callbacks go here (empty: none)
  std::string waba_id = "100000000000001";  // entry[].id of every callback
  int rate_per_s = 80;        // sends per phone_number_id per second; beyond: 429 code 130429
  int pair_interval_ms = 0;   // same recipient faster than this: 400 code 131056 (0: off)
};

struct SimulatorConfig {
  std::string listen = "127.0.0.1:8090";
  std::string name = "sim";   // this node's name in /sim/sessions/log
  int latency_ms = 5;
  int latency_jitter_ms = 5;
  double failure_rate = 0.0;
  bool dedupe = true;                // false: every request is "sent" again (like Cloud API/WAHA)
  std::string auth_store;     // directory of paired sessions' auth, shared by nodes (empty: memory)
  int delivered_delay_ms = 50;  // DEVICE ack / "delivered" status after the send (0: none)
  int read_delay_ms = 100;      // READ ack / "read" status after that (0: none)
  // > 0: an engine send's receipts go out first and its HTTP answer this much later — a
  // provider whose webhooks overtake its reply (the receipt-before-outcome race, made certain).
  int receipts_before_reply_ms = 0;
  int callback_retries = 8;     // a callback answered non-2xx is retried this often
  int callback_backoff_ms = 200;  // first retry's wait; doubles each time, capped at 10 s
  int callback_timeout_ms = 5000;
  int log_max_sends = 100000;   // /sim/log keeps the newest this many sends
  SimulatorEngineConfig engine;
  SimulatorCloudApiConfig cloud_api;
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

// Provider credentials are stored encrypted under this key (base64 of 32 bytes; see
// core/secret_box.hpp). Empty: sessions with credentials are refused with a clear error.
struct SecretsConfig {
  std::string key;
};

struct SessionsConfig {
  // A send to a session that is not WORKING: hold it (up to hold_max_s, then message.failed
  // reason session_not_working) or fail it at once.
  std::string not_working = "hold";  // hold|fail
  int hold_max_s = 300;
  int hold_poll_ms = 1000;           // how often a held send looks at its session's status again
};

// An engine node (WAHA's REST API), named in config: engine.nodes.<name>.{url, api_key,
// webhook_hmac_key}. Its callbacks arrive at intake /v1/providers/engine/<name>/webhook.
// Nodes may also be registered at run time (`switchboard nodes add`, POST /v1/admin/nodes):
// core/node_registry.hpp; config nodes are registered there at start (source 'config').
struct EngineNode {
  std::string name, url, api_key, webhook_hmac_key;
  int capacity = 100;                     // max sessions placed on it
  std::string storage_group = "default";  // nodes of a group share session auth storage
};

struct EngineConfig {
  std::string default_node;                  // where new engine sessions go (first node if empty)
  std::map<std::string, EngineNode> nodes;
  int timeout_ms = 15000;
  const EngineNode* node(const std::string& name) const {
    auto it = nodes.find(name);
    return it == nodes.end() ? nullptr : &it->second;
  }
  const EngineNode* placement() const;       // the node for a new session, or null if none
};

// The WhatsApp Cloud API (Meta Graph). app_secret signs every callback (X-Hub-Signature-256)
// and verify_token answers the subscription handshake; a session may carry its own.
struct CloudApiConfig {
  std::string graph_url = "https://graph.facebook.com";
  std::string version = "v21.0";
  std::string app_secret;
  std::string verify_token;
  int timeout_ms = 15000;
};

// The consumer group that turns provider callbacks (sb.callbacks) into message receipts,
// inbound messages and session statuses.
// `switchboard placer`: health probes, failover and drain of engine nodes (one replica acts at a
// time, holding a lease in PostgreSQL).
struct PlacerConfig {
  int probe_interval_ms = 2000;     // each node's GET /api/sessions this often
  int probe_timeout_ms = 1500;
  int failure_threshold = 3;        // failed probes in a row before a node is declared dead
  int lease_ttl_ms = 10000;         // a leader that stops renewing for this long is replaced
  // Restarts on one node: at most this many in flight (until the session reports a status
  // past STARTING or start_timeout_ms), one every start_stagger_ms ± start_jitter (fraction).
  // WAHA takes ~5 s per browser session: 4 at a time, 1.25 s apart keeps a node near one start
  // per second without a storm.
  int max_starts_per_node = 4;
  int start_stagger_ms = 1250;
  double start_jitter = 0.3;
  int start_timeout_ms = 60000;
  std::string ops_listen;           // /health, /health/ready, /metrics ("host:port"; empty: off)
};

struct CallbacksConfig {
  int unmatched_retry_s = 120;  // a receipt for a send whose outcome isn't recorded yet waits this long
  int batch_max = 500;
  int linger_ms = 5;
  std::string ops_listen;
};

// Anti-ban pacing (see core/pacing_policy.hpp): the defaults every session gets unless its
// tenant's or its own `pacing` says otherwise, enforced in Redis across replicas and lanes.
struct PacingConfig {
  bool enabled = true;              // false: no pacing, no Redis call per send
  int min_gap_ms = 0;               // between two sends of a session, + random 0..jitter_ms
  int jitter_ms = 0;
  int per_minute = 0;               // sliding-window caps (0: none)
  int per_hour = 0;
  std::string warmup_daily_caps;    // "20,40,80": daily caps from the first WORKING day on
  int cloud_api_number_per_s = 80;  // Cloud API per-number throughput
  int cloud_api_pair_gap_ms = 0;    // Cloud API: same recipient again after this (Meta: ~6000)
  int throttle_backoff_ms = 1000;   // 429 / 130429: the session's sends wait at least this
  int pause_cool_down_s = 900;      // a session paused on a ban signal resumes after this (0: by API)
  int policy_cache_ms = 5000;       // a session's overrides are re-read this often
  int resume_poll_ms = 1000;        // how often workers look for paused sessions due to resume
};

// Scheduled sends (`send_at`): every intake replica runs a scheduler thread (and `switchboard
// scheduler` runs one alone) that publishes due messages to their lane, FOR UPDATE SKIP LOCKED
// batches, so any number of replicas share the work. See producers/scheduled_sender.hpp.
struct SchedulerConfig {
  bool enabled = true;            // run the scheduler thread inside intake
  int poll_interval_ms = 200;     // how often due messages are looked for: the bound on lateness
  int batch_max = 500;            // messages published per transaction
  int max_ahead_days = 90;        // a send_at further ahead is refused (422)
};

// Per-tenant quotas at intake, counted in Redis (one atomic script per request) so every
// intake replica shares them. 0 = unlimited. tenant_quotas rows (PostgreSQL) override per tenant.
struct QuotaConfig {
  int requests_per_s = 0;         // authenticated API requests per tenant per second
  int messages_per_day = 0;       // accepted messages per tenant per UTC day
  int override_refresh_ms = 5000; // how often intake re-reads tenant_quotas
};

// Global backpressure: when the lanes' consumer lag (high watermark − committed offset, summed
// over a lane's partitions) passes max_lag, intake answers sends with 503 + Retry-After.
struct BackpressureConfig {
  int max_lag = 0;                // records; 0 = off
  int check_interval_ms = 1000;   // lag is computed this often (cached in between)
  int retry_after_s = 5;
};

struct Config {
  KafkaConfig kafka;
  PostgresConfig postgres;
  RedisConfig redis;
  LogConfig log;
  IntakeConfig intake;
  StreamConfig stream;
  WorkerConfig worker;
  ProviderConfig provider;
  SimulatorConfig simulator;
  WebhooksConfig webhooks;
  SecretsConfig secrets;
  SessionsConfig sessions;
  EngineConfig engine;
  CloudApiConfig cloud_api;
  CallbacksConfig callbacks;
  PacingConfig pacing;
  SchedulerConfig scheduler;
  QuotaConfig quotas;
  BackpressureConfig backpressure;
  PlacerConfig placer;
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
