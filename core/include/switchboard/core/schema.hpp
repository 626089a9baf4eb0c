#pragma once
// JSON Schema validation (valijson, draft 7) against the contract files in schemas/.
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace valijson {
class Schema;
}

namespace sb {

class SchemaSet {
 public:
  // Loads every *.json under dir (names like "commands/command"). Throws ConfigError.
  explicit SchemaSet(const std::string& dir);
  ~SchemaSet();
  // Throws InvalidInput with the first failing field ("to", "data.text") and why.
  void validate(const std::string& name, const nlohmann::json& doc) const;

  // The longest string a "pattern" is ever run on (a schema's maxLength may lower it).
  static constexpr std::size_t kMaxPatternInput = 4096;

 private:
  struct Loaded {
    std::unique_ptr<valijson::Schema> compiled;
    nlohmann::json document;  // for the pattern-input length check
  };
  std::map<std::string, Loaded> schemas_;
};

// Parses JSON text; throws InvalidInput("malformed JSON ...") naming the byte offset.
nlohmann::json parse_json(std::string_view text);

}  // namespace sb
