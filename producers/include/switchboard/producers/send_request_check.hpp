#pragma once
// The send body's schema check without valijson, for the schema it was written for.
//
// POST /v1/sessions/{session}/messages is intake's hot path, and its valijson run (plus the
// pattern-input walk before it) was ~30,000 instructions of a ~258,000-instruction send in
// callgrind. A plain send — an object of `to`, `text` and optionally `priority` and
// `idempotency_key`, each clearly within schemas/http/send_message_request.json — is checked by
// hand here; anything else (send_at, an unexpected field, a doubtful value, malformed JSON)
// goes through parse_send_request, so every refusal is still valijson's, word for word.
//
// The shortcut only switches on when the loaded schema document equals the one it was written
// for: an edited schema turns it off (intake logs it) until this check is updated with it.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "switchboard/producers/request_parsing.hpp"

namespace sb {

class SendBodyShortcut {
 public:
  explicit SendBodyShortcut(const nlohmann::json& schema_document);
  // Reads <schemas_dir>/http/send_message_request.json; off when it is unreadable.
  static SendBodyShortcut from_dir(const std::string& schemas_dir);
  bool enabled() const { return enabled_; }
  // parse_send_request's answer (or its RequestRejected), without valijson for a plain send.
  SendMessageRequest parse(std::string_view body, const std::optional<std::string>& idempotency_header,
                           const SchemaSet& schemas) const;
  // True when the shortcut may answer for this document (valijson would accept it).
  bool accepts(const nlohmann::json& body) const;

 private:
  bool enabled_ = false;
};

}  // namespace sb
