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

  // Switchboard's placement fence (X-Switchboard-Generation), kept beside the auth so every
  // node of the storage group sees it: a call with an older generation than the newest one
  // seen for the session is refused (returns that newest one); a newer one becomes the newest.
  // Returns 0 when admitted. Real WAHA has no such check; it stands in for "the storage layer
  // knows who owns the session now".
  uint64_t admit(const std::string& session, uint64_t generation);

 private:
  std::string path_of(const std::string& session) const;
  const std::string directory_;
  mutable std::mutex mu_;
  std::map<std::string, Account> memory_;  // when there's no directory
  std::map<std::string, uint64_t> generations_;  // likewise
};

}  // namespace sb::sim
