#include "model/token_losses.h"

#include <algorithm>
#include <cmath>

namespace vtv::model {

Score score_tokens(Loss loss, Mode mode, const float* logits, const int32_t* argmax, int64_t vocab,
                   const int32_t* target) {
  double ce = 0;
  int correct = 0;
  for (int i = 0; i < kQuadrantTokens; ++i) {
    const int row = quadrant_logit_row(mode, i);
    const float* l = logits + int64_t(row) * vocab;
    correct += argmax[row] == target[i];
    if (loss == Loss::TokenCE) {
      const double m = *std::max_element(l, l + vocab);
      double s = 0;
      for (int64_t v = 0; v < vocab; ++v) s += std::exp(double(l[v]) - m);
      ce += m + std::log(s) - double(l[target[i]]);
    }
  }
  const float accuracy = float(double(correct) / kQuadrantTokens);
  if (loss == Loss::TokenCE) return {float(ce / kQuadrantTokens), accuracy};
  return {-accuracy, accuracy};
}

}  // namespace vtv::model
