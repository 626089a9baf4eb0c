#pragma once
// A real QR code (libqrencode) of a pairing value, as a PNG image: what an engine's
// GET /api/{session}/auth/qr serves and a phone camera (or zbarimg) can read.
#include <string>

namespace sb::sim {

// PNG bytes: 8-bit grayscale, 8 pixels per module, a 4-module quiet zone. Throws sb::Error
// (Internal) if the value can't be encoded (longer than a QR code holds).
std::string qr_png(const std::string& value);

}  // namespace sb::sim
