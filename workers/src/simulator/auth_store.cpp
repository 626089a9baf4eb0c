#include "auth_store.hpp"

#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <sstream>
#include <fcntl.h>
#include <sys/file.h>
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

uint64_t AuthStore::admit(const std::string& session, uint64_t generation) {
  std::lock_guard lock(mu_);
  if (directory_.empty()) {
    auto& newest = generations_[session];
    if (generation < newest) return newest;
    newest = generation;
    return 0;
  }
  // One small file per session, read and written under an exclusive flock: the nodes sharing
  // the directory are separate processes.
  const std::string path = directory_ + "/" + percent_encode(session) + ".generation";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    log::error("simulator.generation_unavailable", {{"session", session}, {"path", path}});
    return 0;  // can't tell: admit (as a real engine would)
  }
  ::flock(fd, LOCK_EX);
  char buf[32] = {0};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  const uint64_t newest = n > 0 ? std::strtoull(buf, nullptr, 10) : 0;
  uint64_t refused = 0;
  if (generation < newest) {
    refused = newest;
  } else if (generation > newest) {
    const std::string text = std::to_string(generation);
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
      log::error("simulator.generation_write_failed", {{"session", session}, {"path", path}});
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
  return refused;
}

}  // namespace sb::sim
