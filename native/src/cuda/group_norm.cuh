// GroupNorm split across kernels (docs/method.md#vqgan: 32 groups, eps 1e-6, affine): the kernel that produces a
// feature map accumulates each (sample, group)'s sum and sum of squares in double (group_norm_accumulate),
// and the kernel that consumes it turns them into per-channel scale and shift at its start
// (group_norm_tables) and applies them, with swish, to each value it loads (group_norm_value). So the
// normalised map is never written. Arithmetic after the statistics follows cpu::group_norm:
// a = rstd * gamma[c], s = beta[c] - mean * a, y = x * a + s, then y / (1 + exp(-y)).
#pragma once
#include <cstdint>

#include "cuda/vqgan_kernels.h"

namespace vtv::cuda {

// Scale a and shift s of channel c of sample n (C channels, `hw` = the stored map's H*W).
__device__ __forceinline__ void group_norm_coeffs(const GroupNormIn& g, int64_t n, int C, int64_t hw, int c, float& a,
                                                  float& s) {
  const int cpg = C / g.groups;
  const double count = double(cpg) * double(hw);
  const double* st = g.stats + (n * g.groups + c / cpg) * 2;
  const double mean = st[0] / count;
  double var = st[1] / count - mean * mean;
  var = var > 0.0 ? var : 0.0;
  const float meanf = static_cast<float>(mean);
  const float rstd = 1.0f / sqrtf(static_cast<float>(var) + g.eps);
  a = rstd * g.gamma[c];
  s = __fsub_rn(g.beta[c], __fmul_rn(meanf, a));
}

// The coefficients of all C channels of sample n into sc[C], sh[C] (shared memory), by the whole block.
// Callers __syncthreads() before reading the tables.
__device__ __forceinline__ void group_norm_tables(const GroupNormIn& g, int64_t n, int C, int64_t hw, float* sc,
                                                  float* sh) {
  for (int c = threadIdx.x; c < C; c += blockDim.x) group_norm_coeffs(g, n, C, hw, c, sc[c], sh[c]);
}

__device__ __forceinline__ float swish(float y) { return y / (1.0f + expf(-y)); }

__device__ __forceinline__ float group_norm_value(float x, float a, float s, bool use_swish) {
  const float y = __fadd_rn(__fmul_rn(x, a), s);  // no FMA: the CPU rounds the product
  return use_swish ? swish(y) : y;
}

// Adds one block's per-row partial sums to the global statistics: rows r of the tile hold output
// channel c0 + r of sample n (rows >= `rows` are outside the map). Rows of one group are summed in
// shared memory first, so each (block, group) issues one pair of atomics.
__device__ __forceinline__ void group_norm_flush(const double* row_sum, const double* row_sq, int rows, int c0,
                                                 int C, int groups, int64_t n, double* stats) {
  const int cpg = C / groups;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    const int c = c0 + r;
    if (c >= C) continue;
    // The first row of each group inside this tile sums the group's rows.
    if (r != 0 && c % cpg != 0) continue;
    const int grp = c / cpg;
    double s = 0.0, q = 0.0;
    for (int rr = r; rr < rows && c0 + rr < C && (c0 + rr) / cpg == grp; ++rr) {
      s += row_sum[rr];
      q += row_sq[rr];
    }
    atomicAdd(stats + (n * groups + grp) * 2, s);
    atomicAdd(stats + (n * groups + grp) * 2 + 1, q);
  }
}

}  // namespace vtv::cuda
