// Per-sample scores of a decoded image against the target output cell (docs/method.md#metrics): the bottom-right
// 111x111 cell [113:224, 113:224] of the predicted uint8 image against the target's uint8 pixels.
#pragma once
#include <cstdint>

#include "vtv/engine.h"

namespace vtv::model {

using vtv::kCell;       // cell side in pixels (src/model-constants.json)
using vtv::kCellStart;  // first row/column of the bottom-right cell
constexpr int64_t kCellBytes = 3 * kCell * kCell;

// The uint8 value of a decoded pixel in [0, 1]: trunc(clip(p * 255, 0, 255)), as `.int()` does.
uint8_t pixel_to_byte(float p);

// The default target: the 8-bit values the canvas's bottom-right cell was made from. The VTV code
// truncates clip((x*std + mean)*255) of a canvas it normalised in float64, which returns the original
// bytes exactly; our canvases are float32, where truncation would give v-1 for ~16% of values, so we
// de-normalise in double and round to nearest, which returns the same original bytes (the TypeScript
// gtQuadrant does the same). canvas [3][224][224] -> target [3][111][111].
void canvas_target(const float* canvas, uint8_t* target);

struct Score {
  float loss;    // -IoU or MSE
  float metric;  // IoU or MSE
};

// pixels: one decoded image [3][224][224] in [0, 1]; target [3][111][111].
// IoU: a pixel is foreground iff R+G+B > 382.5 (nearer to white than to black). When neither image has
// a foreground pixel the union is empty; the reference then divides 0/0 = NaN, which would poison a
// REINFORCE batch's mean and std, so we define IoU = 1 there (both masks empty = identical masks).
// MSE: both crops mapped back to normalised space, (v/255 - mean)/std in double, mean squared difference
// over 3x111x111.
Score score_cell(Loss loss, const float* pixels, const uint8_t* target);

}  // namespace vtv::model
