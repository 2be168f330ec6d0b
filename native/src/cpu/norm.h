// LayerNorm (transformer) and GroupNorm (VQGAN), fp32, with statistics in double-free two-pass form.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace vtv::cpu {

// y[r][c] = (x[r][c] - mean_r) / sqrt(var_r + eps) * gamma[c] + beta[c]; biased variance. y may alias x.
void layer_norm(ThreadPool& pool, const float* x, int64_t rows, int64_t C, const float* gamma, const float* beta,
                float eps, float* y);

// GroupNorm over x[N][C][HW] with `groups` groups (statistics per sample and group over C/groups * HW
// values), affine per channel, then swish y = y*sigmoid(y) when `swish`. y may alias x.
void group_norm(ThreadPool& pool, const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                const float* gamma, const float* beta, bool swish, float* y);

}  // namespace vtv::cpu
