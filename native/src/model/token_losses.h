// Per-sample scores in VQGAN token space (the paper's future work, docs/method.md#token-objective): the MAE's logits at the 49
// output-quadrant positions against the target canvas's encoder tokens, so a search sample costs one
// MAE forward and no VQGAN decode.
#pragma once
#include <cstdint>

#include "model/losses.h"
#include "vtv/engine.h"

namespace vtv::model {

// The logit row of output-quadrant position i (0..48, raster over rows 7..13, columns 7..13): one-shot
// logits cover all 196 patches; zero-shot logits cover rows 7..13 only (query and output interleaved).
inline int quadrant_logit_row(Mode mode, int i) {
  const int id = quadrant_patch_id(i);
  return mode == Mode::OneShot ? id : id - kHalf * kGrid;
}

// One sample. logits: [P][vocab] (P = 196 one-shot, 98 zero-shot); argmax: its P argmax ids;
// target: 49 tokens in [0, vocab).
//   TokenCE:       loss = mean_i (logsumexp(logits[row_i]) - logits[row_i][target_i]), in double.
//   TokenAccuracy: loss = -accuracy.
// metric = accuracy = the fraction of i with argmax[row_i] == target_i, for both.
Score score_tokens(Loss loss, Mode mode, const float* logits, const int32_t* argmax, int64_t vocab,
                   const int32_t* target);

}  // namespace vtv::model
