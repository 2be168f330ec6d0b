// Random inputs shared by the tests: normal vectors and canvases with image-like structure. Each is a
// pure function of its seed, so a test that names a seed sees the same values in every build.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "vtv/config.h"

namespace vtv::test {

// Floats in one canvas: 3 channels of kImage x kImage.
constexpr int64_t kCanvasFloats = int64_t(3) * kImage * kImage;

// n normal samples with mean `offset` and standard deviation `scale`.
inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = offset + scale * normal(rng);
  return v;
}

// n canvases, in normalised units, with image-like structure (per channel a smooth gradient plus noise)
// so that patches, tokens and losses vary across the canvas as they would on real images.
inline std::vector<float> make_canvases(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> c(static_cast<size_t>(n * kCanvasFloats));
  for (int i = 0; i < n; ++i) {
    for (int ch = 0; ch < 3; ++ch) {
      const float a = u(rng), b = u(rng), d = u(rng);
      for (int y = 0; y < kImage; ++y) {
        for (int x = 0; x < kImage; ++x) {
          c[static_cast<size_t>(((i * 3 + ch) * kImage + y) * kImage + x)] =
              a + b * float(y) / kImage + d * float(x) / kImage + noise(rng);
        }
      }
    }
  }
  return c;
}

}  // namespace vtv::test
