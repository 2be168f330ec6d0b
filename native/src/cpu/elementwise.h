// Small row-wise ops of the forward.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace vtv::cpu {

// out[r] = index of the largest x[r][:]; the first one on ties (as torch.argmax).
void argmax_rows(ThreadPool& pool, const float* x, int64_t rows, int64_t cols, int32_t* out);

}  // namespace vtv::cpu
