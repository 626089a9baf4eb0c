// `switchboard`: one binary, one subcommand per role. main only parses flags and wires rooms.
#include <CLI/CLI.hpp>
#include <csignal>
#include <functional>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "switchboard/core/cluster_status.hpp"
#include "switchboard/core/command.hpp"
#include "switchboard/core/config.hpp"
#include "switchboard/core/http_client.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/kafka.hpp"
#include "switchboard/core/log.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/tenant_store.hpp"
#include "switchboard/producers/command_publisher.hpp"
#include "switchboard/producers/intake_server.hpp"
#include "switchboard/producers/scheduled_sender.hpp"
#include "switchboard/core/node_registry.hpp"
#include "switchboard/producers/node_api.hpp"
#include "switchboard/workers/callbacks/callback_worker.hpp"
#include "switchboard/workers/placement/placer.hpp"
#include "switchboard/workers/lane_worker.hpp"
#include "switchboard/workers/providers/routing_provider.hpp"
#include "switchboard/workers/simulator.hpp"
#include "switchboard/workers/webhooks/webhook_dispatcher.hpp"

namespace {

// Exit codes scripts can rely on.
enum Exit { kOk = 0, kFailed = 1, kUsage = 2, kExists = 3, kNotFound = 4, kUnavailable = 5 };

std::atomic<bool> g_stop{false};
std::mutex g_stoppers_mu;
std::vector<std::function<void()>> g_stoppers;

void on_stop(std::function<void()> f) {
  std::lock_guard lock(g_stoppers_mu);
  g_stoppers.push_back(std::move(f));
}

// Signals are blocked in every thread and taken by one waiter, which stops the servers. The
// stop is graceful and bounded; a second SIGINT/SIGTERM during it exits at once (what was not
// committed is redone by the next owner).
void install_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    sb::log::info("process.signal", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}, {"action", "graceful stop"}});
    g_stop = true;
    {
      std::lock_guard lock(g_stoppers_mu);
      for (auto& f : g_stoppers) f();
    }
    sigwait(&set, &sig);
    sb::log::warn("process.signal", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}, {"action", "exit now"}});
    spdlog::default_logger()->flush();
    std::_Exit(128 + sig);
  }).detach();
}

std::vector<sb::kafka::TopicSpec> all_topics(const sb::Config& c) {
  std::vector<sb::kafka::TopicSpec> specs;
  for (const char* lane : sb::kLanes)
    specs.push_back({c.topic(sb::lane_topic_base(lane)), c.kafka.partitions, c.kafka.replication_factor, {}});
  specs.push_back({c.topic("sb.events"), c.kafka.partitions, c.kafka.replication_factor, {}});
  specs.push_back({c.topic("sb.dlq"), c.kafka.partitions, c.kafka.replication_factor, {{"retention.ms", "1209600000"}}});
  specs.push_back({c.topic("sb.webhooks.dlq"), c.kafka.partitions, c.kafka.replication_factor, {{"retention.ms", "1209600000"}}});
  specs.push_back({c.topic("sb.callbacks"), c.kafka.partitions, c.kafka.replication_factor, {}});
  return specs;
}

void ensure_topics(const sb::Config& c) {
  auto created = sb::kafka::ensure_topics(c.kafka, all_topics(c));
  for (const auto& t : created) std::cout << "created topic " << t << std::endl;
  std::cout << "topics ready (" << all_topics(c).size() << ")" << std::endl;
}

void migrate(const sb::Config& c) {
  sb::pg::Pool pool(c.postgres);
  auto applied = sb::pg::migrate(pool, c.schemas_dir + "/sql");
  for (const auto& m : applied) std::cout << "applied " << m << std::endl;
  std::cout << "database schema up to date" << std::endl;
}

void run_worker(const sb::Config& c, const std::string& lane) {
  sb::LaneWorker worker(c, lane, sb::make_session_provider(c));
  worker.run(g_stop);
}

void run_callbacks(const sb::Config& c) {
  sb::CallbackWorker worker(c);
  worker.run(g_stop);
}

void run_webhooks(const sb::Config& c) {
  sb::WebhookDispatcher dispatcher(c);
  dispatcher.run(g_stop);
}

void run_dev(const sb::Config& c) {
  migrate(c);
  ensure_topics(c);
  sb::Simulator simulator(c.simulator);
  sb::IntakeServer intake(c);
  // Each role runs on its own thread; the first one to fail (a port taken, say) stops the
  // others and its error becomes the process's (exit 2 for a config error), never a terminate.
  std::mutex failed_mu;
  std::exception_ptr failed;
  auto stop_all = [&] {
    g_stop = true;
    simulator.stop();
    intake.stop();
  };
  auto role = [&](const char* name, std::function<void()> body) {
    return std::thread([&, name, body = std::move(body)] {
      try {
        body();
      } catch (const std::exception& e) {
        sb::log::error("dev.role_failed", {{"role", name}, {"detail", e.what()}});
        {
          std::lock_guard lock(failed_mu);
          if (!failed) failed = std::current_exception();
        }
        stop_all();
      }
    });
  };
  on_stop(stop_all);
  std::vector<std::thread> roles;
  roles.push_back(role("simulator", [&] { simulator.run(); }));
  roles.push_back(role("intake", [&] { intake.run(); }));
  for (const char* lane : sb::kLanes) roles.push_back(role(lane, [&c, lane] { run_worker(c, lane); }));
  roles.push_back(role("callbacks", [&c] { run_callbacks(c); }));
  roles.push_back(role("webhooks", [&c] { run_webhooks(c); }));
  roles.push_back(role("placer", [&c] { sb::Placer(c).run(g_stop); }));
  sb::log::info("dev.started", {{"intake", c.intake.listen}, {"simulator", c.simulator.listen}, {"kafka", c.kafka.brokers}});
  for (auto& r : roles) r.join();
  if (failed) std::rethrow_exception(failed);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Switchboard: a Kafka-driven messaging gateway core"};
  app.require_subcommand(1);
  std::string config_path;
  if (const char* env = std::getenv("SWITCHBOARD_CONFIG")) config_path = env;
  app.add_option("-c,--config", config_path, "YAML config file (env SWITCHBOARD_CONFIG); env SWITCHBOARD_<SECTION>_<KEY> overrides keys");

  auto* migrate_cmd = app.add_subcommand("migrate", "apply database migrations from schemas/sql");
  auto* topics_cmd = app.add_subcommand("topics", "manage Kafka topics");
  auto* topics_ensure = topics_cmd->add_subcommand("ensure", "create missing topics (lanes, events, dlq, webhooks dlq)");
  topics_cmd->require_subcommand(1);

  auto* tenant_cmd = app.add_subcommand("tenant", "manage tenants");
  tenant_cmd->require_subcommand(1);
  std::string tenant_name;
  auto* tenant_create = tenant_cmd->add_subcommand("create", "create a tenant; prints its API key on the last line");
  tenant_create->add_option("name", tenant_name, "tenant name")->required();
  auto* tenant_key = tenant_cmd->add_subcommand("key", "mint a new API key for a tenant (last line)");
  tenant_key->add_option("name", tenant_name, "tenant name")->required();
  auto* tenant_show = tenant_cmd->add_subcommand("show", "print a tenant's id (exit 4 if missing)");
  tenant_show->add_option("name", tenant_name, "tenant name")->required();

  auto* session_cmd = app.add_subcommand("session", "manage sessions");
  session_cmd->require_subcommand(1);
  std::string session_name;
  auto* session_create = session_cmd->add_subcommand("create", "create a session for a tenant");
  session_create->add_option("tenant", tenant_name, "tenant name")->required();
  session_create->add_option("session", session_name, "session name")->required();

  auto* intake_cmd = app.add_subcommand("intake", "serve the HTTP intake API");
  std::string lane;
  auto* worker_cmd = app.add_subcommand("worker", "consume one priority lane and execute its commands");
  worker_cmd->add_option("--lane", lane, "high, default or low")->required()->check(CLI::IsMember({"high", "default", "low"}));
  auto* sim_cmd = app.add_subcommand("simulator", "serve a simulated messaging provider over HTTP");
  auto* webhooks_cmd = app.add_subcommand("webhooks", "deliver events from sb.events to tenants' webhook endpoints");
  auto* callbacks_cmd = app.add_subcommand("callbacks", "turn provider callbacks (sb.callbacks) into receipts, inbound messages and session statuses");
  auto* scheduler_cmd = app.add_subcommand("scheduler", "publish scheduled messages (send_at) to their lanes when due (intake runs one too: scheduler.enabled)");
  auto* dev_cmd = app.add_subcommand("dev", "run simulator, intake, the three lane workers, the callbacks worker, the webhook dispatcher and the placer in one process");

  // Engine nodes (issue 9): the registry in PostgreSQL, and the placer that keeps sessions on live nodes.
  auto* nodes_cmd = app.add_subcommand("nodes", "manage engine nodes (registry in PostgreSQL)");
  nodes_cmd->require_subcommand(1);
  sb::NewNode new_node;
  bool nodes_json = false, drain_wait = false;
  int drain_timeout_s = 600;
  auto* nodes_add = nodes_cmd->add_subcommand("add", "register an engine node (WAHA REST API)");
  nodes_add->add_option("name", new_node.name, "node name (part of its callback URL)")->required();
  nodes_add->add_option("--url", new_node.url, "base URL, e.g. http://waha-1:3000")->required();
  nodes_add->add_option("--capacity", new_node.capacity, "max sessions placed on it")->required()->check(CLI::NonNegativeNumber);
  nodes_add->add_option("--group", new_node.storage_group, "storage group: nodes sharing session auth storage (default: default)");
  nodes_add->add_option("--api-key", new_node.api_key, "the node's X-Api-Key (sealed at rest)");
  nodes_add->add_option("--webhook-hmac-key", new_node.webhook_hmac_key, "key its webhooks are signed with (default: a new random one)");
  auto* nodes_list = nodes_cmd->add_subcommand("list", "every node: capacity, sessions, health, draining");
  nodes_list->add_flag("--json", nodes_json, "one JSON document, for scripts");
  std::string node_name;
  auto* nodes_drain = nodes_cmd->add_subcommand("drain", "move every session off a node (the placer does it), e.g. before an upgrade");
  nodes_drain->add_option("name", node_name, "node name")->required();
  nodes_drain->add_flag("--wait", drain_wait, "wait until the node is empty");
  nodes_drain->add_option("--timeout", drain_timeout_s, "seconds --wait waits (default 600)");
  auto* nodes_undrain = nodes_cmd->add_subcommand("undrain", "let sessions be placed on a node again");
  nodes_undrain->add_option("name", node_name, "node name")->required();
  auto* nodes_remove = nodes_cmd->add_subcommand("remove", "forget a node (refused while sessions are placed on it)");
  nodes_remove->add_option("name", node_name, "node name")->required();
  auto* placer_cmd = app.add_subcommand("placer", "probe engine nodes, fail sessions over, drain nodes (one replica acts, leased)");

  auto* publish_cmd = app.add_subcommand("publish", "publish a send command straight to its lane topic (no HTTP)");
  std::string to, text, priority = "default", message_id;
  publish_cmd->add_option("--tenant", tenant_name, "tenant name")->required();
  publish_cmd->add_option("--session", session_name, "session name")->required();
  publish_cmd->add_option("--to", to, "recipient, E.164")->required();
  publish_cmd->add_option("--text", text, "message text")->required();
  publish_cmd->add_option("--priority", priority, "lane")->check(CLI::IsMember({"high", "default", "low"}));
  publish_cmd->add_option("--id", message_id, "message id (default: a new UUIDv7)");

  auto* status_cmd = app.add_subcommand(
      "status", "brokers, topics and partitions, consumer groups (members, assignments, lag), dead-letter depth");
  bool status_json = false;
  status_cmd->add_flag("--json", status_json, "one JSON document, for scripts");

  CLI11_PARSE(app, argc, argv);

  sb::Config config;
  try {
    config = sb::load_config(config_path);
  } catch (const sb::Error& e) {
    std::cerr << "switchboard: " << e.what() << "\n";
    return kUsage;
  }
  const std::string component = app.get_subcommands().front()->get_name();
  sb::log::setup(config.log, component);
  sb::http_global_init();
  install_signal_thread();

  try {
    if (*migrate_cmd) {
      migrate(config);
    } else if (*topics_ensure) {
      ensure_topics(config);
    } else if (*tenant_create) {
      sb::pg::Pool pool(config.postgres);
      sb::TenantStore tenants(pool);
      auto [tenant, key] = tenants.create(tenant_name);
      std::cout << "tenant " << tenant.name << " id " << tenant.id << "\n"
                << "API key (shown once, store it now):\n"
                << key << "\n";
    } else if (*tenant_key) {
      sb::pg::Pool pool(config.postgres);
      sb::TenantStore tenants(pool);
      std::cout << "new API key for " << tenant_name << " (shown once):\n" << tenants.mint_key(tenant_name) << "\n";
    } else if (*tenant_show) {
      sb::pg::Pool pool(config.postgres);
      sb::TenantStore tenants(pool);
      auto t = tenants.find(tenant_name);
      if (!t) throw sb::NotFound("tenant '" + tenant_name + "' does not exist");
      std::cout << t->id << "\n";
    } else if (*session_create) {
      sb::pg::Pool pool(config.postgres);
      sb::TenantStore tenants(pool);
      auto t = tenants.find(tenant_name);
      if (!t) throw sb::NotFound("tenant '" + tenant_name + "' does not exist");
      tenants.create_session(t->id, session_name);
      std::cout << "session " << session_name << " created for tenant " << tenant_name << "\n";
    } else if (*intake_cmd) {
      sb::IntakeServer intake(config);
      on_stop([&] { intake.stop(); });
      intake.run();
    } else if (*worker_cmd) {
      run_worker(config, lane);
    } else if (*webhooks_cmd) {
      run_webhooks(config);
    } else if (*callbacks_cmd) {
      run_callbacks(config);
    } else if (*scheduler_cmd) {
      sb::pg::Pool pool(config.postgres);
      sb::CommandPublisher publisher(config, config.intake.publish_timeout_ms);
      sb::ScheduledSender scheduler(config, pool, publisher);
      while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the signal thread sets it
      scheduler.stop();
    } else if (*sim_cmd) {
      sb::Simulator simulator(config.simulator);
      on_stop([&] { simulator.stop(); });
      simulator.run();
    } else if (*dev_cmd) {
      run_dev(config);
    } else if (*status_cmd) {
      const auto status = sb::read_cluster_status(config);
      if (status_json) std::cout << sb::to_json(status).dump(2) << "\n";
      else std::cout << sb::to_text(status);
    } else if (*nodes_cmd) {
      sb::pg::Pool pool(config.postgres);
      sb::NodeRegistry nodes(pool, config.engine, sb::SecretBox(config.secrets.key));
      nodes.register_config_nodes();
      if (*nodes_add) {
        if (new_node.webhook_hmac_key.empty()) new_node.webhook_hmac_key = sb::new_secret("whk_");
        if (new_node.storage_group.empty()) new_node.storage_group = "default";
        nodes.add(new_node);
        std::cout << "node " << new_node.name << " added (" << new_node.url << ", capacity " << new_node.capacity << ", group "
                  << new_node.storage_group << ")\n";
      } else if (*nodes_list) {
        const auto all = nodes.list();
        if (nodes_json) {
          nlohmann::json items = nlohmann::json::array();
          for (const auto& n : all) items.push_back(sb::NodeApi::view(n));
          std::cout << nlohmann::json{{"nodes", items}}.dump(2) << "\n";
        } else {
          std::printf("%-16s %-10s %-8s %9s %9s  %-9s %s\n", "NAME", "GROUP", "HEALTH", "SESSIONS", "CAPACITY", "STATE", "URL");
          for (const auto& n : all)
            std::printf("%-16s %-10s %-8s %9d %9d  %-9s %s\n", n.name.c_str(), n.storage_group.c_str(), n.health.c_str(), n.sessions,
                        n.capacity, n.draining ? (n.sessions == 0 ? "drained" : "draining") : "active", n.url.c_str());
        }
      } else if (*nodes_drain) {
        nodes.set_draining(node_name, true);
        std::cout << "node " << node_name << " is draining: the placer moves its sessions off" << std::endl;
        if (drain_wait) {
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(drain_timeout_s);
          while (true) {
            auto n = nodes.get(node_name);
            if (!n) throw sb::NotFound("engine node '" + node_name + "' was removed meanwhile");
            if (n->sessions == 0) break;
            if (std::chrono::steady_clock::now() >= deadline || g_stop)
              throw sb::Unavailable("node " + node_name + " still has " + std::to_string(n->sessions) +
                                    " sessions after " + std::to_string(drain_timeout_s) + " s: is a placer running?");
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
          }
          std::cout << "node " << node_name << " is empty (drained)" << std::endl;
        }
      } else if (*nodes_undrain) {
        nodes.set_draining(node_name, false);
        std::cout << "node " << node_name << " takes sessions again\n";
      } else if (*nodes_remove) {
        nodes.remove(node_name);
        std::cout << "node " << node_name << " removed\n";
      }
    } else if (*placer_cmd) {
      sb::Placer placer(config);
      placer.run(g_stop);
    } else if (*publish_cmd) {
      sb::pg::Pool pool(config.postgres);
      sb::TenantStore tenants(pool);
      auto t = tenants.find(tenant_name);
      if (!t) throw sb::NotFound("tenant '" + tenant_name + "' does not exist");
      sb::SendCommand cmd{message_id.empty() ? sb::new_uuid_v7() : message_id, t->id, session_name, priority,
                          sb::now_rfc3339(), to, text};
      sb::CommandPublisher publisher(config, 10000);
      auto r = publisher.publish_and_wait(cmd);
      std::cout << "published " << cmd.id << " to " << r.topic << "[" << r.partition << "]@" << r.offset << "\n";
    }
  } catch (const sb::Error& e) {
    sb::log::error("command.failed", {{"command", component}, {"kind", sb::to_string(e.kind())}, {"detail", e.what()}});
    std::cerr << "switchboard " << component << ": " << e.what() << "\n";
    switch (e.kind()) {
      case sb::ErrorKind::Conflict: return kExists;
      case sb::ErrorKind::NotFound: return kNotFound;
      case sb::ErrorKind::Unavailable: return kUnavailable;
      case sb::ErrorKind::Config:
      case sb::ErrorKind::Invalid: return kUsage;
      default: return kFailed;
    }
  } catch (const std::exception& e) {
    std::cerr << "switchboard " << component << ": unexpected error: " << e.what() << "\n";
    return kFailed;
  }
  return kOk;
}
