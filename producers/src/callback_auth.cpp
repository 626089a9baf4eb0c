#include "switchboard/producers/callback_auth.hpp"

#include "switchboard/core/hmac.hpp"

namespace sb {

bool engine_callback_signed(std::string_view hmac_key, std::string_view body, std::string_view x_webhook_hmac) {
  return !x_webhook_hmac.empty() && hmac_hex_matches(HmacDigest::Sha512, hmac_key, body, x_webhook_hmac);
}

bool cloud_callback_signed(std::string_view app_secret, std::string_view body, std::string_view x_hub_signature_256) {
  constexpr std::string_view prefix = "sha256=";
  if (app_secret.empty() || x_hub_signature_256.substr(0, prefix.size()) != prefix) return false;
  return hmac_hex_matches(HmacDigest::Sha256, app_secret, body, x_hub_signature_256.substr(prefix.size()));
}

std::optional<std::string> cloud_handshake_challenge(const http::Request& req, std::string_view verify_token) {
  if (req.get_param_value("hub.mode") != "subscribe" || verify_token.empty() ||
      !equal_constant_time(req.get_param_value("hub.verify_token"), verify_token))
    return std::nullopt;
  return req.get_param_value("hub.challenge");
}

}  // namespace sb
