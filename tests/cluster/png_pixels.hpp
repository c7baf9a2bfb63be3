// Reading a PNG's pixels in tests (the dashboard's screenshot): 8-bit RGB or RGBA,
// not interlaced, as Chromium writes them. zlib only.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

struct png_image {
  uint32_t width = 0, height = 0;
  unsigned channels = 0;       // 3 or 4
  std::vector<uint8_t> pixels;  // rows of width * channels bytes
  std::string error;            // why it could not be read, or ""
};

inline png_image read_png(const std::string& path) {
  png_image img;
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto u32 = [&](size_t at) {
    return uint32_t(uint8_t(data[at])) << 24 | uint32_t(uint8_t(data[at + 1])) << 16 |
           uint32_t(uint8_t(data[at + 2])) << 8 | uint32_t(uint8_t(data[at + 3]));
  };
  if (data.size() < 8 || data.compare(1, 3, "PNG") != 0) {
    img.error = "not a PNG";
    return img;
  }
  std::string idat;
  for (size_t at = 8; at + 12 <= data.size();) {
    auto length = u32(at);
    auto type = data.substr(at + 4, 4);
    if (at + 12 + length > data.size()) break;
    if (type == "IHDR") {
      img.width = u32(at + 8);
      img.height = u32(at + 12);
      auto depth = uint8_t(data[at + 16]), color = uint8_t(data[at + 17]), interlace = uint8_t(data[at + 20]);
      if (depth != 8 || (color != 2 && color != 6) || interlace != 0) {
        img.error = "unsupported PNG (depth " + std::to_string(depth) + ", color type " + std::to_string(color) + ")";
        return img;
      }
      img.channels = color == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat += data.substr(at + 8, length);
    }
    at += 12 + length;
  }
  size_t stride = size_t(img.width) * img.channels;
  std::vector<uint8_t> raw((stride + 1) * img.height);
  uLongf raw_size = raw.size();
  if (img.channels == 0 ||
      uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_size != raw.size()) {
    img.error = "cannot inflate the image data";
    return img;
  }
  img.pixels.resize(stride * img.height);
  for (uint32_t y = 0; y < img.height; ++y) {
    auto filter = raw[y * (stride + 1)];
    const uint8_t* src = &raw[y * (stride + 1) + 1];
    uint8_t* row = &img.pixels[y * stride];
    const uint8_t* up = y > 0 ? &img.pixels[(y - 1) * stride] : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      int a = x >= img.channels ? row[x - img.channels] : 0;
      int b = up ? up[x] : 0;
      int c = up && x >= img.channels ? up[x - img.channels] : 0;
      int predictor = 0;
      switch (filter) {
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) / 2; break;
        case 4: {
          int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: break;
      }
      row[x] = uint8_t(src[x] + predictor);
    }
  }
  return img;
}

// Pixels within `tolerance` of the colour (r, g, b) on each channel.
inline size_t count_pixels(const png_image& img, int r, int g, int b, int tolerance = 24) {
  size_t n = 0;
  for (size_t i = 0; i + img.channels <= img.pixels.size(); i += img.channels)
    if (std::abs(img.pixels[i] - r) <= tolerance && std::abs(img.pixels[i + 1] - g) <= tolerance &&
        std::abs(img.pixels[i + 2] - b) <= tolerance)
      ++n;
  return n;
}
