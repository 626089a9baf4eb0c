#pragma once
// How intake tells a provider callback is genuine, before anything of it is parsed (pure: no
// I/O, so the routes in callback_api.cpp, the unit tests and the fuzz target share it):
//   engine (WAHA)  X-Webhook-Hmac = hex HMAC-SHA512 of the raw body under the node's key
//   Cloud API      X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256 of the raw body under the
//                  app secret
//   Meta's GET handshake: hub.mode=subscribe and hub.verify_token = ours → echo hub.challenge
#include <optional>
#include <string>
#include <string_view>

#include "switchboard/core/http_server.hpp"

namespace sb {

bool engine_callback_signed(std::string_view hmac_key, std::string_view body, std::string_view x_webhook_hmac);
// False whenever app_secret is empty (an unset secret must never verify anything).
bool cloud_callback_signed(std::string_view app_secret, std::string_view body, std::string_view x_hub_signature_256);
// The challenge to answer with, or nullopt (403): wrong mode, wrong token, or no verify_token set.
std::optional<std::string> cloud_handshake_challenge(const http::Request& req, std::string_view verify_token);

}  // namespace sb
