// Which of the 196 patches each sequence position holds, per mode (docs/method.md#canvas and
// #zero-shot). Encoder positions 1.. hold the visible patches in ids_shuffle order (raster order of the
// kept patches); decoder positions 1.. hold patches in raster order after the un-shuffle, and zero-shot
// keeps only rows 7..13 of them.
#pragma once
#include <vector>

#include "vtv/engine.h"

namespace vtv::model {

// Patch ids at encoder positions 1..enc_tokens-1.
//   one-shot: rows 0-6 (all columns) then rows 7-13 columns 0-6, raster order: 147 ids.
//   zero-shot: only the query quadrant, rows 7-13 columns 0-6: 49 ids (one-shot positions 99..147).
inline std::vector<int> encoder_patch_ids(Mode mode) {
  std::vector<int> ids;
  for (int r = 0; r < kGrid; ++r) {
    for (int c = 0; c < kGrid; ++c) {
      const bool visible = r < kHalf || c < kHalf;
      const bool query = r >= kHalf && c < kHalf;
      if (mode == Mode::OneShot ? visible : query) ids.push_back(r * kGrid + c);
    }
  }
  return ids;
}

// Patch ids at decoder positions 1..dec_tokens-1: all 196 (one-shot) or rows 7-13 (zero-shot, 98).
inline std::vector<int> decoder_patch_ids(Mode mode) {
  std::vector<int> ids;
  for (int id = mode == Mode::OneShot ? 0 : kHalf * kGrid; id < kPatches; ++id) ids.push_back(id);
  return ids;
}

}  // namespace vtv::model
