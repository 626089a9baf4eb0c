#include "switchboard/core/config.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/pacing_policy.hpp"

namespace sb {
namespace {

// One configurable key: its dotted path and how to parse a textual value into the struct.
struct Field {
  std::string path;
  std::function<void(const std::string& value, const std::string& where)> set;
};

std::string env_name(const std::string& path) {
  std::string out = "SWITCHBOARD_";
  for (char c : path) out += (c == '.') ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

class FieldTable {
 public:
  void text(const std::string& path, std::string& dst) {
    fields_.push_back({path, [&dst](const std::string& v, const std::string&) { dst = v; }});
  }
  void integer(const std::string& path, int& dst, int min, int max) {
    fields_.push_back({path, [&dst, path, min, max](const std::string& v, const std::string& where) {
      std::size_t used = 0;
      long long parsed = 0;
      try {
        parsed = std::stoll(v, &used);
      } catch (...) {
        used = 0;
      }
      if (used != v.size() || v.empty() || parsed < min || parsed > max)
        throw ConfigError("config key '" + path + "' (" + where + ") = '" + v +
                          "': expected an integer from " + std::to_string(min) + " to " +
                          std::to_string(max));
      dst = static_cast<int>(parsed);
    }});
  }
  void real(const std::string& path, double& dst, double min, double max) {
    fields_.push_back({path, [&dst, path, min, max](const std::string& v, const std::string& where) {
      std::size_t used = 0;
      double parsed = 0;
      try {
        parsed = std::stod(v, &used);
      } catch (...) {
        used = 0;
      }
      if (used != v.size() || v.empty() || parsed < min || parsed > max) {
        std::ostringstream msg;
        msg << "config key '" << path << "' (" << where << ") = '" << v
            << "': expected a number from " << min << " to " << max;
        throw ConfigError(msg.str());
      }
      dst = parsed;
    }});
  }
  void boolean(const std::string& path, bool& dst) {
    fields_.push_back({path, [&dst, path](const std::string& v, const std::string& where) {
      if (v == "true") dst = true;
      else if (v == "false") dst = false;
      else throw ConfigError("config key '" + path + "' (" + where + ") = '" + v + "': allowed values are true, false");
    }});
  }
  void choice(const std::string& path, std::string& dst, std::vector<std::string> allowed) {
    fields_.push_back({path, [&dst, path, allowed](const std::string& v, const std::string& where) {
      for (const auto& a : allowed)
        if (a == v) {
          dst = v;
          return;
        }
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw ConfigError("config key '" + path + "' (" + where + ") = '" + v +
                        "': allowed values are " + list);
    }});
  }
  const std::vector<Field>& fields() const { return fields_; }

 private:
  std::vector<Field> fields_;
};

void bind_all(FieldTable& t, Config& c) {
  t.text("kafka.brokers", c.kafka.brokers);
  t.text("kafka.topic_prefix", c.kafka.topic_prefix);
  t.integer("kafka.partitions", c.kafka.partitions, 1, 10000);
  t.integer("kafka.replication_factor", c.kafka.replication_factor, 1, 16);
  t.text("postgres.url", c.postgres.url);
  t.integer("postgres.pool_size", c.postgres.pool_size, 1, 256);
  t.integer("postgres.statement_timeout_ms", c.postgres.statement_timeout_ms, 100, 3600000);
  t.text("redis.url", c.redis.url);
  t.integer("redis.timeout_ms", c.redis.timeout_ms, 10, 60000);
  t.choice("log.level", c.log.level, {"trace", "debug", "info", "warn", "error"});
  t.choice("log.format", c.log.format, {"json", "text"});
  t.text("intake.listen", c.intake.listen);
  t.text("intake.public_url", c.intake.public_url);
  t.integer("intake.io_threads", c.intake.io_threads, 1, 64);
  t.integer("intake.blocking_threads", c.intake.blocking_threads, 1, 256);
  t.integer("intake.idle_timeout_ms", c.intake.idle_timeout_ms, 1000, 3600000);
  t.integer("intake.max_body_bytes", c.intake.max_body_bytes, 256, 64 * 1024 * 1024);
  t.integer("intake.publish_timeout_ms", c.intake.publish_timeout_ms, 100, 300000);
  t.integer("intake.retry_after_s", c.intake.retry_after_s, 1, 3600);
  t.integer("intake.auth_cache_ttl_ms", c.intake.auth_cache_ttl_ms, 0, 3600000);
  t.integer("intake.auth_failure_limit", c.intake.auth_failure_limit, 0, 1000000);
  t.integer("intake.auth_failure_window_s", c.intake.auth_failure_window_s, 1, 86400);
  t.integer("intake.auth_block_s", c.intake.auth_block_s, 1, 86400);
  t.integer("intake.insert_batch_max", c.intake.insert_batch_max, 1, 10000);
  t.integer("intake.insert_linger_ms", c.intake.insert_linger_ms, 0, 1000);
  t.integer("intake.insert_writers", c.intake.insert_writers, 1, 16);
  t.text("intake.cors_allowed_origins", c.intake.cors_allowed_origins);
  t.integer("stream.buffer_events", c.stream.buffer_events, 1, 1000000);
  t.integer("stream.heartbeat_ms", c.stream.heartbeat_ms, 100, 3600000);
  t.integer("stream.max_connections_per_tenant", c.stream.max_connections_per_tenant, 1, 1000000);
  t.integer("stream.lease_ttl_ms", c.stream.lease_ttl_ms, 300, 3600000);
  t.integer("worker.max_in_flight", c.worker.max_in_flight, 1, 100000);
  t.choice("worker.on_uncertain", c.worker.on_uncertain, {"fail", "resend"});
  t.integer("worker.max_buffered", c.worker.max_buffered, 1, 1000000);
  t.integer("worker.commit_interval_ms", c.worker.commit_interval_ms, 10, 600000);
  t.integer("worker.revoke_drain_timeout_ms", c.worker.revoke_drain_timeout_ms, 0, 600000);
  t.integer("worker.provider_attempts", c.worker.provider_attempts, 1, 100);
  t.integer("worker.provider_backoff_ms", c.worker.provider_backoff_ms, 0, 600000);
  t.integer("worker.session_rate_per_s", c.worker.session_rate_per_s, 0, 1000000);
  t.integer("worker.result_batch_max", c.worker.result_batch_max, 1, 10000);
  t.integer("worker.result_linger_ms", c.worker.result_linger_ms, 0, 1000);
  t.text("worker.ops_listen", c.worker.ops_listen);
  t.text("provider.url", c.provider.url);
  t.integer("provider.timeout_ms", c.provider.timeout_ms, 10, 600000);
  t.boolean("provider.reconcile", c.provider.reconcile);
  t.text("simulator.listen", c.simulator.listen);
  t.integer("simulator.latency_ms", c.simulator.latency_ms, 0, 600000);
  t.integer("simulator.latency_jitter_ms", c.simulator.latency_jitter_ms, 0, 600000);
  t.real("simulator.failure_rate", c.simulator.failure_rate, 0.0, 1.0);
  t.boolean("simulator.dedupe", c.simulator.dedupe);
  t.text("simulator.name", c.simulator.name);
  t.text("simulator.auth_store", c.simulator.auth_store);
  t.integer("simulator.delivered_delay_ms", c.simulator.delivered_delay_ms, 0, 3600000);
  t.integer("simulator.read_delay_ms", c.simulator.read_delay_ms, 0, 3600000);
  t.integer("simulator.receipts_before_reply_ms", c.simulator.receipts_before_reply_ms, 0, 600000);
  t.integer("simulator.callback_retries", c.simulator.callback_retries, 0, 100);
  t.integer("simulator.callback_backoff_ms", c.simulator.callback_backoff_ms, 1, 600000);
  t.integer("simulator.callback_timeout_ms", c.simulator.callback_timeout_ms, 100, 600000);
  t.integer("simulator.log_max_sends", c.simulator.log_max_sends, 1, 100000000);
  t.text("simulator.engine.api_key", c.simulator.engine.api_key);
  t.integer("simulator.engine.start_delay_ms", c.simulator.engine.start_delay_ms, 0, 600000);
  t.integer("simulator.engine.qr_rotate_ms", c.simulator.engine.qr_rotate_ms, 10, 3600000);
  t.text("simulator.cloud_api.access_token", c.simulator.cloud_api.access_token);
  t.text("simulator.cloud_api.app_secret", c.simulator.cloud_api.app_secret);
  t.text("simulator.cloud_api.verify_token", c.simulator.cloud_api.verify_token);
  t.text("simulator.cloud_api.webhook_url", c.simulator.cloud_api.webhook_url);
  t.text("simulator.cloud_api.waba_id", c.simulator.cloud_api.waba_id);
  t.integer("simulator.cloud_api.rate_per_s", c.simulator.cloud_api.rate_per_s, 1, 1000000);
  t.integer("simulator.cloud_api.pair_interval_ms", c.simulator.cloud_api.pair_interval_ms, 0, 3600000);
  t.text("webhooks.allow_cidrs", c.webhooks.allow_cidrs);
  t.integer("webhooks.rotation_window_s", c.webhooks.rotation_window_s, 0, 30 * 86400);
  t.integer("webhooks.timeout_ms", c.webhooks.timeout_ms, 100, 600000);
  t.integer("webhooks.connect_timeout_ms", c.webhooks.connect_timeout_ms, 100, 600000);
  t.text("webhooks.retry_schedule", c.webhooks.retry_schedule);
  t.real("webhooks.retry_jitter", c.webhooks.retry_jitter, 0.0, 0.99);
  t.integer("webhooks.max_in_flight", c.webhooks.max_in_flight, 1, 100000);
  t.integer("webhooks.max_in_flight_per_endpoint", c.webhooks.max_in_flight_per_endpoint, 1, 10000);
  t.integer("webhooks.max_queued_per_endpoint", c.webhooks.max_queued_per_endpoint, 0, 1000000);
  t.integer("webhooks.max_buffered", c.webhooks.max_buffered, 1, 10000000);
  t.integer("webhooks.commit_interval_ms", c.webhooks.commit_interval_ms, 10, 600000);
  t.integer("webhooks.record_linger_ms", c.webhooks.record_linger_ms, 0, 1000);
  t.integer("webhooks.retry_poll_interval_ms", c.webhooks.retry_poll_interval_ms, 10, 600000);
  t.integer("webhooks.retry_claim_batch", c.webhooks.retry_claim_batch, 1, 100000);
  t.integer("webhooks.endpoint_cache_ms", c.webhooks.endpoint_cache_ms, 0, 3600000);
  t.integer("webhooks.breaker_window", c.webhooks.breaker_window, 1, 10000);
  t.integer("webhooks.breaker_min_attempts", c.webhooks.breaker_min_attempts, 1, 10000);
  t.real("webhooks.breaker_failure_ratio", c.webhooks.breaker_failure_ratio, 0.01, 1.0);
  t.integer("webhooks.breaker_cool_down_s", c.webhooks.breaker_cool_down_s, 1, 86400);
  t.integer("webhooks.breaker_max_cool_down_s", c.webhooks.breaker_max_cool_down_s, 1, 7 * 86400);
  t.integer("webhooks.disable_after_s", c.webhooks.disable_after_s, 1, 365 * 86400);
  t.integer("webhooks.event_retention_days", c.webhooks.event_retention_days, 1, 3650);
  t.integer("webhooks.replay_max_events", c.webhooks.replay_max_events, 1, 10000000);
  t.text("webhooks.ops_listen", c.webhooks.ops_listen);
  t.text("paths.schemas", c.schemas_dir);
  t.text("secrets.key", c.secrets.key);
  t.choice("sessions.not_working", c.sessions.not_working, {"hold", "fail"});
  t.integer("sessions.hold_max_s", c.sessions.hold_max_s, 0, 7 * 86400);
  t.integer("sessions.hold_poll_ms", c.sessions.hold_poll_ms, 50, 600000);
  t.text("engine.default_node", c.engine.default_node);
  t.integer("engine.timeout_ms", c.engine.timeout_ms, 100, 600000);
  t.text("cloud_api.graph_url", c.cloud_api.graph_url);
  t.text("cloud_api.version", c.cloud_api.version);
  t.text("cloud_api.app_secret", c.cloud_api.app_secret);
  t.text("cloud_api.verify_token", c.cloud_api.verify_token);
  t.integer("cloud_api.timeout_ms", c.cloud_api.timeout_ms, 100, 600000);
  t.integer("callbacks.unmatched_retry_s", c.callbacks.unmatched_retry_s, 0, 86400);
  t.integer("callbacks.batch_max", c.callbacks.batch_max, 1, 100000);
  t.integer("callbacks.linger_ms", c.callbacks.linger_ms, 0, 1000);
  t.text("callbacks.ops_listen", c.callbacks.ops_listen);
  t.boolean("pacing.enabled", c.pacing.enabled);
  t.integer("pacing.min_gap_ms", c.pacing.min_gap_ms, 0, 86400000);
  t.integer("pacing.jitter_ms", c.pacing.jitter_ms, 0, 3600000);
  t.integer("pacing.per_minute", c.pacing.per_minute, 0, 1000);
  t.integer("pacing.per_hour", c.pacing.per_hour, 0, 10000);
  t.text("pacing.warmup_daily_caps", c.pacing.warmup_daily_caps);
  t.integer("pacing.cloud_api_number_per_s", c.pacing.cloud_api_number_per_s, 0, 10000);
  t.integer("pacing.cloud_api_pair_gap_ms", c.pacing.cloud_api_pair_gap_ms, 0, 86400000);
  t.integer("pacing.throttle_backoff_ms", c.pacing.throttle_backoff_ms, 0, 3600000);
  t.integer("pacing.pause_cool_down_s", c.pacing.pause_cool_down_s, 0, 30 * 86400);
  t.integer("pacing.policy_cache_ms", c.pacing.policy_cache_ms, 0, 3600000);
  t.integer("pacing.resume_poll_ms", c.pacing.resume_poll_ms, 50, 600000);
  t.boolean("scheduler.enabled", c.scheduler.enabled);
  t.integer("scheduler.poll_interval_ms", c.scheduler.poll_interval_ms, 10, 60000);
  t.integer("scheduler.batch_max", c.scheduler.batch_max, 1, 10000);
  t.integer("scheduler.max_ahead_days", c.scheduler.max_ahead_days, 1, 3650);
  t.integer("quotas.requests_per_s", c.quotas.requests_per_s, 0, 10000000);
  t.integer("quotas.messages_per_day", c.quotas.messages_per_day, 0, 2000000000);
  t.integer("quotas.override_refresh_ms", c.quotas.override_refresh_ms, 100, 3600000);
  t.integer("backpressure.max_lag", c.backpressure.max_lag, 0, 2000000000);
  t.integer("backpressure.check_interval_ms", c.backpressure.check_interval_ms, 100, 600000);
  t.integer("backpressure.retry_after_s", c.backpressure.retry_after_s, 1, 3600);
  t.text("intake.admin_key", c.intake.admin_key);
  t.integer("placer.probe_interval_ms", c.placer.probe_interval_ms, 10, 600000);
  t.integer("placer.probe_timeout_ms", c.placer.probe_timeout_ms, 10, 600000);
  t.integer("placer.failure_threshold", c.placer.failure_threshold, 1, 1000);
  t.integer("placer.lease_ttl_ms", c.placer.lease_ttl_ms, 100, 3600000);
  t.integer("placer.max_starts_per_node", c.placer.max_starts_per_node, 1, 10000);
  t.integer("placer.start_stagger_ms", c.placer.start_stagger_ms, 0, 600000);
  t.real("placer.start_jitter", c.placer.start_jitter, 0.0, 1.0);
  t.integer("placer.start_timeout_ms", c.placer.start_timeout_ms, 100, 3600000);
  t.text("placer.ops_listen", c.placer.ops_listen);
}

const std::string kNotScalar = "\x01<list>";

// engine.nodes: a mapping of node names to {url, api_key, webhook_hmac_key}.
void parse_engine_nodes(const YAML::Node& node, const std::string& origin, EngineConfig& engine) {
  if (node.IsNull()) return;
  if (!node.IsMap()) throw ConfigError(origin + ": 'engine.nodes' must map node names to {url, api_key, webhook_hmac_key}");
  for (const auto& kv : node) {
    EngineNode n;
    n.name = kv.first.as<std::string>();
    const std::string where = origin + ": engine.nodes." + n.name;
    if (n.name.empty() || n.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != std::string::npos)
      throw ConfigError(where + ": a node name is 1+ of A-Z, a-z, 0-9, '_', '-' (it is part of the callback URL)");
    if (!kv.second.IsMap()) throw ConfigError(where + " must be a mapping with url, api_key, webhook_hmac_key");
    for (const auto& f : kv.second) {
      const auto key = f.first.as<std::string>();
      if (!f.second.IsScalar()) throw ConfigError(where + "." + key + " must be a single value");
      const auto v = f.second.as<std::string>();
      if (key == "url") n.url = v;
      else if (key == "api_key") n.api_key = v;
      else if (key == "webhook_hmac_key") n.webhook_hmac_key = v;
      else if (key == "storage_group") n.storage_group = v;
      else if (key == "capacity") {
        try {
          std::size_t used = 0;
          n.capacity = std::stoi(v, &used);
          if (used != v.size() || n.capacity < 0) throw std::invalid_argument(v);
        } catch (const std::exception&) {
          throw ConfigError(where + ".capacity must be a whole number of sessions (0 or more), got '" + v + "'");
        }
      } else throw ConfigError(where + ": unknown key '" + key + "' (known keys here: url, api_key, webhook_hmac_key, capacity, storage_group)");
    }
    if (n.url.rfind("http://", 0) != 0 && n.url.rfind("https://", 0) != 0)
      throw ConfigError(where + ".url must be an http:// or https:// URL, got '" + n.url + "'");
    if (n.storage_group.empty()) throw ConfigError(where + ".storage_group must not be empty");
    if (n.webhook_hmac_key.empty())
      throw ConfigError(where + ".webhook_hmac_key must be set: the node's callbacks are verified with it (X-Webhook-Hmac)");
    engine.nodes[n.name] = std::move(n);
  }
}

// Flattens the YAML mapping into dotted leaf paths; kafka.librdkafka is a free-form map.
void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::map<std::string, std::string>& leaves, Config& c) {
  if (!node.IsMap())
    throw ConfigError(origin + ": '" + (prefix.empty() ? "<root>" : prefix) +
                      "' must be a mapping of keys to values");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (path == "kafka.librdkafka") {
      if (!kv.second.IsMap() && !kv.second.IsNull())
        throw ConfigError(origin + ": 'kafka.librdkafka' must be a mapping of librdkafka properties");
      if (kv.second.IsMap())
        for (const auto& p : kv.second) c.kafka.librdkafka[p.first.as<std::string>()] = p.second.as<std::string>();
      continue;
    }
    if (path == "engine.nodes") {
      parse_engine_nodes(kv.second, origin, c.engine);
      continue;
    }
    if (kv.second.IsMap()) {
      flatten(kv.second, path, origin, leaves, c);
    } else if (kv.second.IsScalar()) {
      leaves[path] = kv.second.as<std::string>();
    } else if (!kv.second.IsNull()) {
      leaves[path] = kNotScalar;  // judged below, once we know whether it names a section
    } else {
      leaves[path] = "";
    }
  }
}

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

Config parse_config(const std::string& yaml_text, const std::string& origin, EnvLookup env) {
  Config c;
  FieldTable table;
  bind_all(table, c);

  std::map<std::string, std::string> leaves;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
  try {
    if (root.IsDefined() && !root.IsNull()) flatten(root, "", origin, leaves, c);
  } catch (const YAML::Exception& e) {
    // A key or value yaml-cpp cannot read as text (e.g. a list used as a key: `? [a]`). Found by
    // fuzz_config: it escaped as yaml-cpp's exception and ended the process instead of an error.
    throw ConfigError(origin + ": " + e.what() + " (keys must be plain names; values single values or mappings)");
  }

  std::set<std::string> known;
  for (const auto& f : table.fields()) known.insert(f.path);
  for (const auto& [path, value] : leaves) {
    if (known.count(path)) {
      if (value == kNotScalar) throw ConfigError(origin + ": config key '" + path + "' must be a single value");
      continue;
    }
    for (const auto& k : known)
      if (k.rfind(path + ".", 0) == 0)
        throw ConfigError(origin + ": '" + path + "' must be a mapping of keys to values");
    const auto section = path.substr(0, path.find('.'));
    std::string siblings;
    for (const auto& k : known)
      if (k.rfind(section + ".", 0) == 0) siblings += (siblings.empty() ? "" : ", ") + k;
    throw ConfigError(origin + ": unknown config key '" + path + "'" +
                      (siblings.empty() ? std::string(" (unknown section '" + section + "')")
                                        : " (known keys here: " + siblings + ")"));
  }
  for (const auto& f : table.fields()) {
    const auto name = env_name(f.path);
    if (auto v = env(name)) {
      f.set(*v, "env " + name);
    } else if (auto it = leaves.find(f.path); it != leaves.end()) {
      f.set(it->second, origin);
    }
  }
  if (c.kafka.brokers.empty()) throw ConfigError("config key 'kafka.brokers' must not be empty");
  if (c.postgres.url.empty()) throw ConfigError("config key 'postgres.url' must not be empty");
  if (c.schemas_dir.empty()) c.schemas_dir = SWITCHBOARD_DEFAULT_SCHEMAS_DIR;
  if (!c.engine.default_node.empty() && !c.engine.node(c.engine.default_node))
    throw ConfigError("config key 'engine.default_node' = '" + c.engine.default_node + "' names no node of engine.nodes");
  c.intake.cors_origins();  // throws for a malformed origin
  try {
    PacingPolicy::parse_caps(c.pacing.warmup_daily_caps);
  } catch (const InvalidInput& e) {
    throw ConfigError(std::string("config key 'pacing.warmup_daily_caps': ") + e.what());
  }
  return c;
}

Config load_config(const std::string& path, EnvLookup env) {
  if (path.empty()) return parse_config("", "<defaults>", env);
  std::ifstream in(path);
  if (!in)
    throw ConfigError("cannot read config file '" + path +
                      "': check the --config path (or SWITCHBOARD_CONFIG)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, env);
}

const EngineNode* EngineConfig::placement() const {
  if (!default_node.empty()) return node(default_node);
  return nodes.empty() ? nullptr : &nodes.begin()->second;
}

std::vector<std::string> WebhooksConfig::allowed_cidrs() const {
  std::vector<std::string> out;
  std::stringstream ss(allow_cidrs);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<std::string> IntakeConfig::cors_origins() const {
  // An origin as a browser sends it: scheme, host (a name or [IPv6]), an optional port; no path.
  static const std::regex origin(R"(^https?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$)");
  std::vector<std::string> out;
  std::stringstream ss(cors_allowed_origins);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    if (item != "*" && !std::regex_match(item, origin))
      throw ConfigError("config key 'intake.cors_allowed_origins': '" + item +
                        "' is not an origin: write scheme://host[:port] as the browser sends it (no path, no trailing "
                        "slash), e.g. https://app.example.com, or * for any origin");
    out.push_back(item);
  }
  return out;
}

}  // namespace sb
