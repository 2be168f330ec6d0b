// Row-wise argmax (the token prediction from the decoder logits).
#include "cpu/elementwise.h"

#include "vtv/error.h"

namespace vtv::cpu {

void argmax_rows(ThreadPool& pool, const float* x, int64_t rows, int64_t cols, int32_t* out) {
  check(rows >= 0 && cols > 0, "argmax_rows: cols must be positive");
  pool.parallel_for(rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * cols;
      int64_t best = 0;
      // Strictly greater: the first index wins ties, as torch.argmax. NaN wins too, as in torch.
      for (int64_t c = 1; c < cols; ++c) {
        if (xr[c] > xr[best] || (xr[c] != xr[c] && xr[best] == xr[best])) best = c;
      }
      out[r] = static_cast<int32_t>(best);
    }
  }, 16);
}

}  // namespace vtv::cpu
