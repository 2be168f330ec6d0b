// The VQGAN AttnBlock core (docs/method.md#vqgan): single head over the HW = 196 positions of a 14x14 map,
// out[:, i] = sum_j softmax_j(q_i . k_j * C^-0.5) v_j, with q, k, v, out stored [C][HW] per sample.
// One block per (sample, 8 queries): the 8 query vectors go to shared memory; each thread takes key
// positions j and accumulates the 8 dot products over C (k read once per block, coalesced along j);
// one warp per query does the softmax as cpu::spatial_attention does (max of the raw scores times the
// scale, exp(s * scale - max), sum, times 1/sum); then one warp per output channel sums p[i][j] v[c][j]
// over j for the 8 queries (v read once per block, coalesced along j). fp32 throughout.
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int QT = 8, THREADS = 256, kMaxC = 512, kMaxHW = 256;

__global__ void __launch_bounds__(THREADS)
spatial_attention_kernel(const float* __restrict__ qkv, int C, int HW, float scale, float* __restrict__ out) {
  __shared__ __align__(16) float qs[kMaxC][QT];  // the block's queries, [c][query]
  __shared__ float ps[QT][kMaxHW];               // scores, then probabilities
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.y;
  const int i0 = blockIdx.x * QT;
  const int nq = min(QT, HW - i0);
  const float* q = qkv + b * 3 * int64_t(C) * HW;
  const float* k = q + int64_t(C) * HW;
  const float* v = k + int64_t(C) * HW;
  for (int e = tid; e < C * QT; e += THREADS) {
    const int c = e / QT, qi = e % QT;
    qs[c][qi] = qi < nq ? q[int64_t(c) * HW + i0 + qi] : 0.0f;
  }
  __syncthreads();

  // Scores s[qi][j] = q_{i0+qi} . k_j.
  for (int j = tid; j < HW; j += THREADS) {
    float acc[QT];
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) acc[qi] = 0.0f;
    for (int c = 0; c < C; ++c) {
      const float kv = __ldg(k + int64_t(c) * HW + j);
      const float4 a = *reinterpret_cast<const float4*>(&qs[c][0]);
      const float4 d = *reinterpret_cast<const float4*>(&qs[c][4]);
      acc[0] = fmaf(a.x, kv, acc[0]);
      acc[1] = fmaf(a.y, kv, acc[1]);
      acc[2] = fmaf(a.z, kv, acc[2]);
      acc[3] = fmaf(a.w, kv, acc[3]);
      acc[4] = fmaf(d.x, kv, acc[4]);
      acc[5] = fmaf(d.y, kv, acc[5]);
      acc[6] = fmaf(d.z, kv, acc[6]);
      acc[7] = fmaf(d.w, kv, acc[7]);
    }
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) ps[qi][j] = acc[qi];
  }
  __syncthreads();

  // Softmax of row `warp` (8 warps, 8 queries).
  if (warp < nq) {
    float mx = -INFINITY;
    for (int j = lane; j < HW; j += 32) mx = fmaxf(mx, ps[warp][j]);
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, m));
    const float shift = mx * scale;
    float sum = 0.0f;
    for (int j = lane; j < HW; j += 32) {
      const float e = expf(__fsub_rn(__fmul_rn(ps[warp][j], scale), shift));
      ps[warp][j] = e;
      sum += e;
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, m);
    const float inv = 1.0f / sum;
    for (int j = lane; j < HW; j += 32) ps[warp][j] *= inv;
  }
  __syncthreads();

  // out[c][i0+qi] = sum_j p[qi][j] v[c][j], one warp per channel.
  float* ob = out + b * int64_t(C) * HW;
  for (int c = warp; c < C; c += THREADS / 32) {
    float acc[QT];
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) acc[qi] = 0.0f;
    for (int j = lane; j < HW; j += 32) {
      const float vv = __ldg(v + int64_t(c) * HW + j);
#pragma unroll
      for (int qi = 0; qi < QT; ++qi) acc[qi] = fmaf(ps[qi][j], vv, acc[qi]);
    }
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) {
#pragma unroll
      for (int m = 16; m > 0; m >>= 1) acc[qi] += __shfl_xor_sync(0xFFFFFFFFu, acc[qi], m);
    }
    // Every lane now holds all QT sums; lane qi writes query qi (no dynamic register indexing).
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) {
      if (lane == qi && qi < nq) ob[int64_t(c) * HW + i0 + qi] = acc[qi];
    }
  }
}

}  // namespace

void spatial_attention(const float* qkv, int64_t B, int C, int HW, float* out, cudaStream_t stream) {
  check(B >= 0 && C > 0 && HW > 0, "spatial_attention: sizes must be positive");
  check(C <= kMaxC && HW <= kMaxHW, "spatial_attention: needs C <= " + std::to_string(kMaxC) + " and HW <= " +
                                        std::to_string(kMaxHW) + ", got C " + std::to_string(C) + ", HW " +
                                        std::to_string(HW));
  check(qkv && out && qkv != out, "spatial_attention: qkv and out must be set and distinct");
  if (B == 0) return;
  check(B <= 65535, "spatial_attention: at most 65535 samples per launch");
  // As cpu::spatial_attention: 1 / sqrt(float(C)).
  const float scale = 1.0f / std::sqrt(static_cast<float>(C));
  dim3 grid(static_cast<unsigned>((HW + QT - 1) / QT), static_cast<unsigned>(B));
  VTV_LAUNCH("spatial_attention_kernel", grid, THREADS, 0, stream, spatial_attention_kernel, qkv, C, HW, scale, out);
}

}  // namespace vtv::cuda
