#include "qr_png.hpp"

#include <qrencode.h>
#include <zlib.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "switchboard/core/errors.hpp"

namespace sb::sim {

namespace {

struct QrDeleter {
  void operator()(QRcode* q) const { QRcode_free(q); }
};

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

// One PNG chunk: length, type, data, CRC-32 of type + data.
void chunk(std::string& png, const char* type, const std::string& data) {
  put_u32(png, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  png += body;
  put_u32(png, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

std::string qr_png(const std::string& value) {
  std::unique_ptr<QRcode, QrDeleter> qr(QRcode_encodeString8bit(value.c_str(), 0, QR_ECLEVEL_M));
  if (!qr) throw Error(ErrorKind::Internal, "cannot encode QR value of " + std::to_string(value.size()) + " bytes");
  constexpr int scale = 8;
  constexpr int quiet = 4;
  const int modules = qr->width + 2 * quiet;
  const int pixels = modules * scale;

  // Scanlines: filter byte 0 (None) + one gray byte per pixel (0 black, 255 white).
  std::string raw;
  raw.reserve(static_cast<std::size_t>(pixels) * (pixels + 1));
  for (int y = 0; y < pixels; ++y) {
    raw += '\0';
    const int my = y / scale - quiet;
    for (int x = 0; x < pixels; ++x) {
      const int mx = x / scale - quiet;
      bool dark = my >= 0 && my < qr->width && mx >= 0 && mx < qr->width && (qr->data[my * qr->width + mx] & 1);
      raw += static_cast<char>(dark ? 0 : 255);
    }
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK)
    throw Error(ErrorKind::Internal, "zlib could not compress the QR image");
  packed.resize(packed_size);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(pixels));
  put_u32(ihdr, static_cast<uint32_t>(pixels));
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // bit depth 8, grayscale, deflate, filter 0, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", packed);
  chunk(png, "IEND", "");
  return png;
}

}  // namespace sb::sim
