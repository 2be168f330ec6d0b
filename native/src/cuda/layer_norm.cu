// LayerNorm: one warp per row, the same two-pass statistics as cpu::layer_norm (mean, then the biased
// variance of the deviations), rstd = 1 / sqrt(var + eps). Rows are re-read from L1/L2 per pass. The
// result can also be written as bf16 (y16), the input of the bf16 Linears that read bf16 activations.
#include <cuda_bf16.h>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/kernels.h"

namespace vtv::cuda {

namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
  return v;
}

__global__ void __launch_bounds__(kWarps * 32)
layer_norm_kernel(const float* x, int64_t rows, int C, const float* __restrict__ gamma, const float* __restrict__ beta,
                  float eps, float* y, __nv_bfloat16* y16) {
  const int lane = threadIdx.x & 31;
  const int64_t r = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const float* xr = x + r * C;
  float* yr = y + r * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += xr[c];
  const float mean = warp_sum(s) / C;
  float q = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = xr[c] - mean;
    q += d * d;
  }
  const float rstd = 1.0f / sqrtf(warp_sum(q) / C + eps);
  // y may alias x: each element is read and then written by the same lane.
  for (int c = lane; c < C; c += 32) {
    const float v = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    yr[c] = v;
    if (y16) y16[r * C + c] = __float2bfloat16_rn(v);
  }
}

}  // namespace

void layer_norm(const float* x, int64_t rows, int64_t C, const float* gamma, const float* beta, float eps, float* y,
                cudaStream_t stream, uint16_t* y_bf16) {
  check(rows >= 0 && C > 0 && C < (int64_t(1) << 30), "cuda layer_norm: rows must be >= 0 and 0 < C < 2^30");
  check(x && y && gamma && beta, "cuda layer_norm: x, y, gamma and beta must be set");
  if (rows == 0) return;
  const int64_t blocks = (rows + kWarps - 1) / kWarps;
  check(blocks < (int64_t(1) << 31), "cuda layer_norm: too many rows");
  VTV_LAUNCH("layer_norm_kernel", static_cast<unsigned>(blocks), kWarps * 32, 0, stream, layer_norm_kernel, x, rows,
             static_cast<int>(C), gamma, beta, eps, y, reinterpret_cast<__nv_bfloat16*>(y_bf16));
}

}  // namespace vtv::cuda
