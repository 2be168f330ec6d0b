// The VQGAN AttnBlock core (docs/method.md#vqgan): single head over the HW = 196 positions of a 14x14 map,
// out[:, i] = sum_j softmax_j(q_i . k_j * C^-0.5) v_j, with q, k, v, out stored [C][HW] per sample.
// One block per (sample, 8 queries): the 8 query vectors go to shared memory; each thread takes key
// positions j and accumulates the 8 dot products over C (k read once per block, coalesced along j);
// one warp per query does the softmax as cpu::spatial_attention does (max of the raw scores times the
// scale, exp(s * scale - max), sum, times 1/sum); then one warp per output channel sums p[i][j] v[c][j]
// over j for the 8 queries (v read once per block, coalesced along j). fp32 throughout.
// spatial_attention_nhwc is the same computation for the bf16 NHWC decoder, where a position's q, k and v
// are contiguous channels of one row of qkv [HW][3C]: the same blocks and the same softmax, with every
// global access now running along channels (8 lanes per key row for the scores, one thread per channel
// pair for the output) and the output rounded to bf16 once.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int QT = 8, THREADS = 256, kMaxC = 512, kMaxHW = 256;

// acc[qi] += q[qi] * kv for the block's QT = 8 queries, q[0..3] in a and q[4..7] in d (both layouts' scores).
__device__ __forceinline__ void fma_queries(float (&acc)[QT], const float4& a, const float4& d, float kv) {
  acc[0] = fmaf(a.x, kv, acc[0]);
  acc[1] = fmaf(a.y, kv, acc[1]);
  acc[2] = fmaf(a.z, kv, acc[2]);
  acc[3] = fmaf(a.w, kv, acc[3]);
  acc[4] = fmaf(d.x, kv, acc[4]);
  acc[5] = fmaf(d.y, kv, acc[5]);
  acc[6] = fmaf(d.z, kv, acc[6]);
  acc[7] = fmaf(d.w, kv, acc[7]);
}

// One warp's softmax of a score row (both layouts), as cpu::spatial_attention: the max of the raw scores
// times the scale, e = exp(s * scale - max) written back in place, and 1 / sum(e) returned (the caller
// multiplies, so that it can store the probabilities where it needs them).
__device__ __forceinline__ float softmax_row_exp(float* row, int HW, float scale, int lane) {
  float mx = -INFINITY;
  for (int j = lane; j < HW; j += 32) mx = fmaxf(mx, row[j]);
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, m));
  const float shift = mx * scale;
  float sum = 0.0f;
  for (int j = lane; j < HW; j += 32) {
    const float e = expf(__fsub_rn(__fmul_rn(row[j], scale), shift));
    row[j] = e;
    sum += e;
  }
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, m);
  return 1.0f / sum;
}

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
      fma_queries(acc, a, d, kv);
    }
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) ps[qi][j] = acc[qi];
  }
  __syncthreads();

  // Softmax of row `warp` (8 warps, 8 queries).
  if (warp < nq) {
    const float inv = softmax_row_exp(ps[warp], HW, scale, lane);
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

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

// The block's 8 queries in fp32, laid out for the score loop: qs[h][j][c8] holds queries 4h .. 4h+3 of
// channel 8 * c8 + j, so the 8 lanes on one key row (consecutive c8) read 8 consecutive float4s (no bank
// conflicts; the warp's other 3 rows read the same ones, a broadcast).
// ps: scores, then exp(), per query row (the softmax as spatial_attention_kernel); pt: the probabilities
// transposed, [key][query], so the output loop reads a key's 8 probabilities as two float4 broadcasts.
__global__ void __launch_bounds__(THREADS)
spatial_attention_nhwc_kernel(const uint16_t* __restrict__ qkv, int C, int HW, float scale,
                              uint16_t* __restrict__ out) {
  __shared__ float4 qs[2][8][kMaxC / 8];
  __shared__ float ps[QT][kMaxHW];
  __shared__ float4 pt[kMaxHW][2];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.y;
  const int i0 = blockIdx.x * QT;
  const int nq = min(QT, HW - i0);
  const int C8 = C / 8;
  const int64_t row = 3 * int64_t(C);  // elements per position of qkv
  const uint16_t* base = qkv + b * HW * row;
  for (int e = tid; e < QT * C8; e += THREADS) {  // e = query * C8 + c8: coalesced along channels
    const int qi = e / C8, c8 = e - qi * C8;
    uint4 u = make_uint4(0u, 0u, 0u, 0u);
    if (qi < nq) u = *reinterpret_cast<const uint4*>(base + (i0 + qi) * row + c8 * 8);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    float* dst = reinterpret_cast<float*>(&qs[qi / 4][0][c8]) + (qi % 4);
#pragma unroll
    for (int j = 0; j < 8; ++j) dst[j * (kMaxC / 8) * 4] = (j & 1) ? bf16_hi(w[j / 2]) : bf16_lo(w[j / 2]);
  }
  __syncthreads();

  // Scores s[qi][j] = q_{i0+qi} . k_j: each warp takes 4 key rows at a time, 8 lanes along each row's
  // channels (16-byte loads: 128 consecutive bytes per row per step), so the 8 partial sums of a lane
  // need only a 3-step reduction within its group of 8 (a whole-warp reduction per key would cost about
  // a third as many shuffles as there are FMAs at C = 512).
  const int kg = lane >> 3, kl = lane & 7;  // key within the warp's 4, lane within the key's 8
  for (int j0 = warp * 4; j0 < HW; j0 += THREADS / 32 * 4) {  // warp-uniform: every lane reaches the shuffles
    const int j = j0 + kg;
    float acc[QT];
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) acc[qi] = 0.0f;
    if (j < HW) {
      const uint16_t* kr = base + int64_t(j) * row + C;
      for (int c8 = kl; c8 < C8; c8 += 8) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(kr + c8 * 8));
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          const float kv = (jj & 1) ? bf16_hi(w[jj / 2]) : bf16_lo(w[jj / 2]);
          const float4 a = qs[0][jj][c8], d = qs[1][jj][c8];
          fma_queries(acc, a, d, kv);
        }
      }
    }
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) {
#pragma unroll
      for (int m = 4; m > 0; m >>= 1) acc[qi] += __shfl_xor_sync(0xFFFFFFFFu, acc[qi], m);
    }
    // Every lane of the group holds the 8 sums; lane qi of the group writes query qi (static indexing).
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) {
      if (kl == qi && j < HW) ps[qi][j] = acc[qi];
    }
  }
  __syncthreads();

  // Softmax of row `warp`, exactly as spatial_attention_kernel; rows of missing queries are zero.
  if (warp < nq) {
    const float inv = softmax_row_exp(ps[warp], HW, scale, lane);
    for (int j = lane; j < HW; j += 32) reinterpret_cast<float*>(pt[j])[warp] = ps[warp][j] * inv;
  } else if (warp < QT) {
    for (int j = lane; j < HW; j += 32) reinterpret_cast<float*>(pt[j])[warp] = 0.0f;
  }
  __syncthreads();

  // out[i0+qi][c, c+1] = sum_j p[qi][j] v[j][c, c+1]: one thread per channel pair, a warp reading 128
  // consecutive bytes of each v row.
  const uint16_t* vb = base + 2 * int64_t(C);
  uint16_t* ob = out + (b * HW + i0) * int64_t(C);
  for (int cp = tid; cp < C / 2; cp += THREADS) {
    float lo[QT], hi[QT];
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) lo[qi] = hi[qi] = 0.0f;
    const uint16_t* vc = vb + 2 * cp;
#pragma unroll 4
    for (int j = 0; j < HW; ++j) {
      const uint32_t w = __ldg(reinterpret_cast<const uint32_t*>(vc + int64_t(j) * row));
      const float v0 = bf16_lo(w), v1 = bf16_hi(w);
      const float4 a = pt[j][0], d = pt[j][1];
      const float p[QT] = {a.x, a.y, a.z, a.w, d.x, d.y, d.z, d.w};
#pragma unroll
      for (int qi = 0; qi < QT; ++qi) {
        lo[qi] = fmaf(p[qi], v0, lo[qi]);
        hi[qi] = fmaf(p[qi], v1, hi[qi]);
      }
    }
#pragma unroll
    for (int qi = 0; qi < QT; ++qi) {
      if (qi < nq) *reinterpret_cast<uint32_t*>(ob + int64_t(qi) * C + 2 * cp) = pack_bf16x2(lo[qi], hi[qi]);
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

void spatial_attention_nhwc(const uint16_t* qkv, int64_t B, int C, int HW, uint16_t* out, cudaStream_t stream) {
  check(B >= 0 && C > 0 && HW > 0, "spatial_attention_nhwc: sizes must be positive");
  check(C <= kMaxC && HW <= kMaxHW, "spatial_attention_nhwc: needs C <= " + std::to_string(kMaxC) + " and HW <= " +
                                        std::to_string(kMaxHW) + ", got C " + std::to_string(C) + ", HW " +
                                        std::to_string(HW));
  check(C % 8 == 0, "spatial_attention_nhwc: C must be a multiple of 8 (16-byte vectors), got " + std::to_string(C));
  check(qkv && out && qkv != out, "spatial_attention_nhwc: qkv and out must be set and distinct");
  check(reinterpret_cast<uintptr_t>(qkv) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 4 == 0,
        "spatial_attention_nhwc: qkv must be 16-byte aligned and out 4-byte aligned");
  if (B == 0) return;
  check(B <= 65535, "spatial_attention_nhwc: at most 65535 samples per launch");
  const float scale = 1.0f / std::sqrt(static_cast<float>(C));  // as spatial_attention
  dim3 grid(static_cast<unsigned>((HW + QT - 1) / QT), static_cast<unsigned>(B));
  VTV_LAUNCH("spatial_attention_nhwc_kernel", grid, THREADS, 0, stream, spatial_attention_nhwc_kernel, qkv, C, HW,
             scale, out);
}

}  // namespace vtv::cuda
