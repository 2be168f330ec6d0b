// Element arithmetic here mirrors the reference's ops one by one; fused multiply-add would round
// differently and flip `.int()` truncations, so contraction is turned off for this file's functions.
#pragma GCC optimize("fp-contract=off")
#include "model/losses.h"

#include <algorithm>

namespace vtv::model {

namespace {
// The metric code's numpy constants are float64.
constexpr const double* kMeanD = kImagenetMean;
constexpr const double* kStdD = kImagenetStd;
}  // namespace

uint8_t pixel_to_byte(float p) {
  float v = p * 255.0f;
  v = std::min(255.0f, std::max(0.0f, v));
  return static_cast<uint8_t>(static_cast<int>(v));
}

void canvas_target(const float* canvas, uint8_t* target) {
  for (int ch = 0; ch < 3; ++ch) {
    for (int y = 0; y < kCell; ++y) {
      const float* row = canvas + (int64_t(ch) * kImage + kCellStart + y) * kImage + kCellStart;
      uint8_t* dst = target + (int64_t(ch) * kCell + y) * kCell;
      for (int x = 0; x < kCell; ++x) {
        // Round to nearest: recovers the original byte from a float32 canvas (see losses.h).
        double v = double(row[x]) * kStdD[ch];
        v = v + kMeanD[ch];
        v = v * 255.0;
        v = std::min(255.0, std::max(0.0, v));
        dst[x] = static_cast<uint8_t>(static_cast<int>(v + 0.5));
      }
    }
  }
}

Score score_cell(Loss loss, const float* pixels, const uint8_t* target) {
  const int64_t plane = int64_t(kImage) * kImage, cell_plane = int64_t(kCell) * kCell;
  auto pred = [&](int ch, int y, int x) {
    return pixel_to_byte(pixels[ch * plane + int64_t(kCellStart + y) * kImage + kCellStart + x]);
  };
  if (loss == Loss::IoU) {
    int64_t inter = 0, uni = 0;
    for (int y = 0; y < kCell; ++y) {
      for (int x = 0; x < kCell; ++x) {
        int sp = 0, st = 0;
        for (int ch = 0; ch < 3; ++ch) {
          sp += pred(ch, y, x);
          st += target[ch * cell_plane + y * kCell + x];
        }
        // R+G+B > 382.5, in integers.
        const bool fp = 2 * sp > 765, ft = 2 * st > 765;
        inter += fp && ft;
        uni += fp || ft;
      }
    }
    const float iou = uni == 0 ? 1.0f : static_cast<float>(double(inter) / double(uni));
    return {-iou, iou};
  }
  // MSE in ImageNet-normalised space.
  double sum = 0;
  for (int ch = 0; ch < 3; ++ch) {
    for (int y = 0; y < kCell; ++y) {
      for (int x = 0; x < kCell; ++x) {
        const double a = (double(pred(ch, y, x)) / 255.0 - kMeanD[ch]) / kStdD[ch];
        const double b = (double(target[ch * cell_plane + y * kCell + x]) / 255.0 - kMeanD[ch]) / kStdD[ch];
        const double d = a - b;
        sum += d * d;
      }
    }
  }
  const float mse = static_cast<float>(sum / double(kCellBytes));
  return {mse, mse};
}

}  // namespace vtv::model
