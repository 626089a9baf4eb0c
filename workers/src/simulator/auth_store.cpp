#include "auth_store.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "switchboard/core/errors.hpp"
#include "switchboard/core/log.hpp"

namespace sb::sim {

namespace fs = std::filesystem;

AuthStore::AuthStore(std::string directory) : directory_(std::move(directory)) {
  if (directory_.empty()) return;
  std::error_code ec;
  fs::create_directories(directory_, ec);
  if (ec || !fs::is_directory(directory_))
    throw ConfigError("simulator.auth_store = '" + directory_ + "': cannot create the directory (" + ec.message() +
                      "); point it at a writable directory or leave it empty to keep auth in memory");
}

std::string AuthStore::path_of(const std::string& session) const {
  return directory_ + "/" + percent_encode(session) + ".json";  // any session name is a safe file name
}

std::optional<Account> AuthStore::load(const std::string& session) const {
  std::lock_guard lock(mu_);
  if (directory_.empty()) {
    auto it = memory_.find(session);
    if (it == memory_.end()) return std::nullopt;
    return it->second;
  }
  std::ifstream in(path_of(session));
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    json j = json::parse(ss.str());
    return Account{j.at("account").get<std::string>(), j.value("pushName", std::string())};
  } catch (const json::exception& e) {
    log::warn("simulator.auth_unreadable", {{"session", session}, {"path", path_of(session)}, {"error", e.what()}});
    return std::nullopt;
  }
}

void AuthStore::save(const std::string& session, const Account& account) {
  std::lock_guard lock(mu_);
  if (directory_.empty()) {
    memory_[session] = account;
    return;
  }
  // Written aside then renamed: another node never reads half a file.
  const std::string path = path_of(session);
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + random_hex(8, false);
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json{{"session", session}, {"account", account.digits}, {"pushName", account.push_name}}.dump();
    if (!out) {
      log::error("simulator.auth_write_failed", {{"session", session}, {"path", tmp}});
      return;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) log::error("simulator.auth_write_failed", {{"session", session}, {"path", path}, {"error", ec.message()}});
}

void AuthStore::erase(const std::string& session) {
  std::lock_guard lock(mu_);
  if (directory_.empty()) {
    memory_.erase(session);
    return;
  }
  std::error_code ec;
  fs::remove(path_of(session), ec);
}

}  // namespace sb::sim
