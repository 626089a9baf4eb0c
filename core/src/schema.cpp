#include "switchboard/core/schema.hpp"

#include <algorithm>
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
    schemas_[name] = Loaded{std::move(schema), std::move(doc)};
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

// libstdc++'s std::regex, which valijson runs for "pattern", recurses once per character it
// repeats over: some ten thousand characters overflow a thread's stack (GCC bug 86164) — a
// 30 KB webhook secret or a record's timestamp with a 30 KB fraction crashed the process
// (found while writing tests/fuzz; their corpora keep such inputs). So every string a
// pattern will see is length-checked first: at most the subschema's maxLength, and never more than kMaxPatternInput. Walks the schema alongside
// the document (properties, additionalProperties, items, allOf/anyOf/oneOf, if/then/else, local
// $ref); a conditional branch is checked whether or not it applies (stricter, never looser).
void check_pattern_inputs(const nlohmann::json& root, const nlohmann::json& schema, const nlohmann::json& doc,
                          const std::string& path, int depth) {
  if (depth > 64 || !schema.is_object()) return;
  if (auto ref = schema.find("$ref"); ref != schema.end() && ref->is_string()) {
    const auto& target = ref->get_ref<const std::string&>();
    if (target.rfind("#/", 0) == 0) {
      const nlohmann::json::json_pointer ptr(target.substr(1));
      if (root.contains(ptr)) check_pattern_inputs(root, root.at(ptr), doc, path, depth + 1);
    }
    return;  // draft 7: $ref replaces its siblings
  }
  if (doc.is_string() && schema.contains("pattern")) {
    std::size_t max = SchemaSet::kMaxPatternInput;
    if (auto m = schema.find("maxLength"); m != schema.end() && m->is_number_unsigned())
      max = std::min<std::size_t>(max, m->get<std::size_t>());
    if (doc.get_ref<const std::string&>().size() > max)
      throw InvalidInput((path.empty() ? std::string("body") : "field '" + path + "'") + ": longer than " +
                             std::to_string(max) + " characters",
                         path);
  }
  for (const char* kw : {"allOf", "anyOf", "oneOf"})
    if (auto it = schema.find(kw); it != schema.end() && it->is_array())
      for (const auto& sub : *it) check_pattern_inputs(root, sub, doc, path, depth + 1);
  for (const char* kw : {"if", "then", "else"})
    if (auto it = schema.find(kw); it != schema.end()) check_pattern_inputs(root, *it, doc, path, depth + 1);
  auto child = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (doc.is_object()) {
    const auto props = schema.find("properties");
    const bool has_props = props != schema.end() && props->is_object();
    const auto extra = schema.find("additionalProperties");
    for (const auto& [key, value] : doc.items()) {
      if (has_props && props->contains(key)) check_pattern_inputs(root, (*props)[key], value, child(key), depth + 1);
      else if (extra != schema.end() && extra->is_object()) check_pattern_inputs(root, *extra, value, child(key), depth + 1);
    }
  }
  if (doc.is_array()) {
    if (auto items = schema.find("items"); items != schema.end()) {
      for (std::size_t i = 0; i < doc.size(); ++i) {
        const auto& sub = items->is_array() ? (i < items->size() ? (*items)[i] : nlohmann::json()) : *items;
        check_pattern_inputs(root, sub, doc[i], child(std::to_string(i)), depth + 1);
      }
    }
  }
}
}  // namespace

void SchemaSet::validate(const std::string& name, const nlohmann::json& doc) const {
  auto it = schemas_.find(name);
  if (it == schemas_.end()) throw Error(ErrorKind::Internal, "no schema named '" + name + "' loaded");
  check_pattern_inputs(it->second.document, it->second.document, doc, "", 0);
  // Validators cache compiled regexes; one per thread keeps that cache without locking.
  thread_local valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc);
  if (validator.validate(*it->second.compiled, target, &results)) return;
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
  } catch (const nlohmann::json::exception& e) {
    // The parser also throws out_of_range (406: a number such as 1e999 overflows a double):
    // the client's input all the same, not an internal error (found by tests/fuzz).
    throw InvalidInput(std::string("malformed JSON: ") + e.what());
  }
}

}  // namespace sb
