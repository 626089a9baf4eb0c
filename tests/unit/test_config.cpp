#include <catch2/catch.hpp>
#include <map>

#include "switchboard/core/config.hpp"
#include "switchboard/core/errors.hpp"

namespace {
std::map<std::string, std::string> fake_env;
std::optional<std::string> lookup(const std::string& name) {
  auto it = fake_env.find(name);
  if (it == fake_env.end()) return std::nullopt;
  return it->second;
}
std::string error_of(const std::string& yaml) {
  try {
    sb::parse_config(yaml, "test.yaml", &lookup);
  } catch (const sb::ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("config: documented file parses to its defaults", "[unit][config]") {
  fake_env.clear();
  auto c = sb::load_config(std::string(SWITCHBOARD_DEFAULT_SCHEMAS_DIR) + "/../config/switchboard.yaml", &lookup);
  sb::Config defaults;
  CHECK(c.kafka.partitions == defaults.kafka.partitions);
  CHECK(c.intake.max_body_bytes == 65536);
  CHECK(c.intake.io_threads == 2);
  CHECK(c.intake.blocking_threads == defaults.intake.blocking_threads);
  CHECK(c.intake.idle_timeout_ms == defaults.intake.idle_timeout_ms);
  CHECK(c.simulator.dedupe);
  CHECK(c.worker.max_in_flight == defaults.worker.max_in_flight);
  CHECK(c.schemas_dir == SWITCHBOARD_DEFAULT_SCHEMAS_DIR);
  auto dev = sb::load_config(std::string(SWITCHBOARD_DEFAULT_SCHEMAS_DIR) + "/../config/dev.yaml", &lookup);
  CHECK(dev.log.format == "text");
}

TEST_CASE("config: values, env overrides and the librdkafka pass-through", "[unit][config]") {
  fake_env = {{"SWITCHBOARD_KAFKA_BROKERS", "k1:9092,k2:9092"}, {"SWITCHBOARD_WORKER_MAX_IN_FLIGHT", "7"}};
  auto c = sb::parse_config("kafka:\n  brokers: x:1\n  partitions: 6\n  librdkafka:\n    security.protocol: ssl\n"
                            "worker:\n  max_in_flight: 99\nsimulator:\n  failure_rate: 0.25\n  dedupe: false\n",
                            "test.yaml", &lookup);
  CHECK(c.kafka.brokers == "k1:9092,k2:9092");  // env wins over the file
  CHECK(c.kafka.partitions == 6);
  CHECK(c.worker.max_in_flight == 7);
  CHECK(c.kafka.librdkafka.at("security.protocol") == "ssl");
  CHECK(c.simulator.failure_rate == Approx(0.25));
  CHECK_FALSE(c.simulator.dedupe);
  CHECK(c.topic("sb.events") == "sb.events");
  fake_env.clear();
}

TEST_CASE("config: bad input names the key and what is allowed", "[unit][config]") {
  fake_env.clear();
  CHECK_THAT(error_of("kafka:\n  brokrs: x\n"), Catch::Contains("unknown config key 'kafka.brokrs'") &&
                                                  Catch::Contains("kafka.brokers"));
  CHECK_THAT(error_of("nope:\n  a: 1\n"), Catch::Contains("unknown config key 'nope.a'"));
  CHECK_THAT(error_of("log:\n  level: loud\n"), Catch::Contains("'log.level'") && Catch::Contains("trace, debug, info, warn, error"));
  CHECK_THAT(error_of("kafka:\n  partitions: many\n"), Catch::Contains("'kafka.partitions'") && Catch::Contains("integer from 1"));
  CHECK_THAT(error_of("kafka:\n  partitions: 0\n"), Catch::Contains("'kafka.partitions'"));
  CHECK_THAT(error_of("simulator:\n  failure_rate: 2\n"), Catch::Contains("'simulator.failure_rate'"));
  CHECK_THAT(error_of("kafka: [1, 2]\n"), Catch::Contains("'kafka' must be a mapping"));
  CHECK_THAT(error_of("kafka:\n  brokers: [a, b]\n"), Catch::Contains("'kafka.brokers' must be a single value"));
  CHECK_THAT(error_of("kafka: {\n"), Catch::Contains("not valid YAML"));
  fake_env = {{"SWITCHBOARD_INTAKE_IO_THREADS", "lots"}};
  CHECK_THAT(error_of(""), Catch::Contains("env SWITCHBOARD_INTAKE_IO_THREADS"));
  fake_env.clear();
  // intake.threads (a thread per connection) is gone: the event-driven server has io_threads.
  CHECK_THAT(error_of("intake:\n  threads: 64\n"), Catch::Contains("unknown config key 'intake.threads'"));
  CHECK_THAT(error_of("simulator:\n  dedupe: maybe\n"), Catch::Contains("'simulator.dedupe'") && Catch::Contains("true, false"));
  fake_env.clear();
  CHECK_THROWS_AS(sb::load_config("/nonexistent/switchboard.yaml", &lookup), sb::ConfigError);
}

TEST_CASE("config: the simulator's engine and cloud_api sections, documented defaults and env overrides", "[unit][config]") {
  fake_env.clear();
  auto documented = sb::load_config(std::string(SWITCHBOARD_DEFAULT_SCHEMAS_DIR) + "/../config/switchboard.yaml", &lookup);
  const sb::SimulatorConfig defaults;
  CHECK(documented.simulator.name == defaults.name);
  CHECK(documented.simulator.auth_store == defaults.auth_store);
  CHECK(documented.simulator.delivered_delay_ms == defaults.delivered_delay_ms);
  CHECK(documented.simulator.read_delay_ms == defaults.read_delay_ms);
  CHECK(documented.simulator.callback_retries == 8);
  CHECK(documented.simulator.engine.start_delay_ms == 100);
  CHECK(documented.simulator.engine.qr_rotate_ms == 20000);
  CHECK(documented.simulator.cloud_api.rate_per_s == 80);
  CHECK(documented.simulator.cloud_api.pair_interval_ms == 0);
  CHECK(documented.simulator.cloud_api.waba_id == defaults.cloud_api.waba_id);

  fake_env = {{"SWITCHBOARD_SIMULATOR_ENGINE_API_KEY", "from-env"}, {"SWITCHBOARD_SIMULATOR_CLOUD_API_RATE_PER_S", "5"}};
  auto c = sb::parse_config("simulator:\n  name: node-2\n  engine:\n    qr_rotate_ms: 500\n  cloud_api:\n"
                            "    webhook_url: http://127.0.0.1:8080/v1/providers/cloud_api/webhook\n",
                            "test.yaml", &lookup);
  CHECK(c.simulator.name == "node-2");
  CHECK(c.simulator.engine.qr_rotate_ms == 500);
  CHECK(c.simulator.engine.api_key == "from-env");
  CHECK(c.simulator.cloud_api.rate_per_s == 5);
  CHECK(c.simulator.cloud_api.webhook_url == "http://127.0.0.1:8080/v1/providers/cloud_api/webhook");
  fake_env.clear();
  CHECK_THAT(error_of("simulator:\n  cloud_api:\n    rate_per_s: 0\n"), Catch::Contains("'simulator.cloud_api.rate_per_s'"));
  CHECK_THAT(error_of("simulator:\n  engine:\n    api_kee: x\n"), Catch::Contains("unknown config key 'simulator.engine.api_kee'"));
}

TEST_CASE("config: stream limits parse, take env overrides and are range-checked", "[unit][config]") {
  fake_env = {{"SWITCHBOARD_STREAM_HEARTBEAT_MS", "2500"}};
  auto c = sb::parse_config("stream:\n  buffer_events: 64\n  max_connections_per_tenant: 10\n", "test.yaml", &lookup);
  CHECK(c.stream.buffer_events == 64);
  CHECK(c.stream.heartbeat_ms == 2500);
  CHECK(c.stream.max_connections_per_tenant == 10);
  fake_env.clear();
  auto defaults = sb::load_config(std::string(SWITCHBOARD_DEFAULT_SCHEMAS_DIR) + "/../config/switchboard.yaml", &lookup);
  CHECK(defaults.stream.buffer_events == sb::StreamConfig{}.buffer_events);
  CHECK(defaults.stream.heartbeat_ms == sb::StreamConfig{}.heartbeat_ms);
  CHECK(error_of("stream:\n  buffer_events: 0\n").find("'stream.buffer_events'") != std::string::npos);
  CHECK(error_of("stream:\n  heartbeat_ms: 10\n").find("from 100 to") != std::string::npos);
  CHECK(error_of("stream:\n  buffer: 5\n").find("known keys here: stream.buffer_events") != std::string::npos);
}

TEST_CASE("config: a key or value YAML cannot read as text is a ConfigError, not yaml-cpp's exception", "[unit][config]") {
  // Found by fuzz_config (seed tests/fuzz/config/regress_yaml_complex_key): it ended the process.
  fake_env.clear();
  const auto complex_key = error_of("kafka:\n  ? [brokers, partitions]\n  : x\n");
  CHECK(complex_key.find("test.yaml") != std::string::npos);
  CHECK(complex_key.find("keys must be plain names") != std::string::npos);
  const auto librdkafka_list = error_of("kafka:\n  librdkafka:\n    linger.ms: [1, 2]\n");
  CHECK(librdkafka_list.find("test.yaml") != std::string::npos);
}

TEST_CASE("config: intake.cors_allowed_origins takes origins or *, and names a malformed one", "[unit][config][cors]") {
  fake_env.clear();
  auto c = sb::parse_config("intake:\n  cors_allowed_origins: \"https://app.example.com, http://localhost:3000,*\"\n"
                            "stream:\n  lease_ttl_ms: 1500\n",
                            "test.yaml", &lookup);
  CHECK(c.intake.cors_origins() == std::vector<std::string>{"https://app.example.com", "http://localhost:3000", "*"});
  CHECK(c.stream.lease_ttl_ms == 1500);
  CHECK(sb::Config{}.intake.cors_origins().empty());
  for (const char* bad : {"https://app.example.com/", "app.example.com", "ftp://x.example", "https://x.example/path"})
    CHECK(error_of(std::string("intake:\n  cors_allowed_origins: \"") + bad + "\"\n").find("intake.cors_allowed_origins") != std::string::npos);
  CHECK(error_of("stream:\n  lease_ttl_ms: 10\n").find("'stream.lease_ttl_ms'") != std::string::npos);
}
