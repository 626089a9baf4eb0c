#pragma once
// A paired engine session's credentials ("auth": the account it was given), per session name.
// With a directory (simulator.auth_store) every session's auth is a file there, so simulator
// processes pointed at one directory share pairings, as WAHA nodes restoring a session's auth
// from shared storage do; without one it lives in memory.
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common.hpp"

namespace sb::sim {

struct Account {
  std::string digits;     // the phone number, e.g. "15551234567"
  std::string push_name;  // the profile name
  std::string id() const { return digits + "@c.us"; }
};

class AuthStore {
 public:
  // Creates the directory if needed; throws ConfigError if it can't.
  explicit AuthStore(std::string directory);
  std::optional<Account> load(const std::string& session) const;
  void save(const std::string& session, const Account& account);
  void erase(const std::string& session);

 private:
  std::string path_of(const std::string& session) const;
  const std::string directory_;
  mutable std::mutex mu_;
  std::map<std::string, Account> memory_;  // when there's no directory
};

}  // namespace sb::sim
