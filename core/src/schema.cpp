#include "switchboard/core/schema.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "switchboard/core/errors.hpp"

namespace sb {
namespace fs = std::filesystem;

SchemaSet::SchemaSet(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw ConfigError("schemas directory '" + dir + "' not found: set paths.schemas (SWITCHBOARD_PATHS_SCHEMAS)");
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(ss.str());
    } catch (const std::exception& e) {
      throw ConfigError("schema file '" + entry.path().string() + "' is not valid JSON: " + e.what());
    }
    auto schema = std::make_unique<valijson::Schema>();
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    try {
      parser.populateSchema(adapter, *schema);
    } catch (const std::exception& e) {
      throw ConfigError("schema file '" + entry.path().string() + "' is not a valid JSON Schema: " + e.what());
    }
    auto name = fs::relative(entry.path(), dir).replace_extension("").generic_string();
    schemas_[name] = std::move(schema);
  }
}

SchemaSet::~SchemaSet() = default;

namespace {
// valijson context looks like ["<root>", "[data]", "[text]"]: turn it into "data.text".
std::string field_of(const std::vector<std::string>& context) {
  std::string out;
  for (const auto& part : context) {
    if (part == "<root>") continue;
    std::string p = part;
    if (p.size() >= 2 && p.front() == '[' && p.back() == ']') p = p.substr(1, p.size() - 2);
    if (p.size() >= 2 && p.front() == '"' && p.back() == '"') p = p.substr(1, p.size() - 2);
    out += (out.empty() ? "" : ".") + p;
  }
  return out;
}
}  // namespace

void SchemaSet::validate(const std::string& name, const nlohmann::json& doc) const {
  auto it = schemas_.find(name);
  if (it == schemas_.end()) throw Error(ErrorKind::Internal, "no schema named '" + name + "' loaded");
  // Validators cache compiled regexes; one per thread keeps that cache without locking.
  thread_local valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc);
  if (validator.validate(*it->second, target, &results)) return;
  // The deepest error is the most specific one ("data.text" rather than "data").
  valijson::ValidationResults::Error err, best;
  std::size_t depth = 0;
  bool any = false;
  while (results.popError(err)) {
    if (!any || err.context.size() > depth) {
      best = err;
      depth = err.context.size();
      any = true;
    }
  }
  const auto field = field_of(best.context);
  throw InvalidInput((field.empty() ? std::string("body") : "field '" + field + "'") + ": " + best.description, field);
}

nlohmann::json parse_json(std::string_view text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw InvalidInput("malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

}  // namespace sb
