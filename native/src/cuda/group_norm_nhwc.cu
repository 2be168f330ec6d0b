// GroupNorm (+ swish) of a bf16 NHWC feature map from its producer's statistics, as a pass of its own
// (vqgan_kernels.h, "The bf16 NHWC decoder"): the NHWC decoder normalises each map once, here, into the
// copy the next convolution reads as stored, instead of normalising every value at each of the 9 taps
// that load it. The pass is purely memory-bound (2 bytes in, 2 bytes out, a handful of flops per value),
// so it is built for bandwidth: each thread moves 16-byte vectors (8 channels), several of them in flight
// before any is used, and the per-channel scale and shift of the block's sample sit in shared memory.
// The fp32 arithmetic is group_norm.cuh's (group_norm_tables, group_norm_value), the very code that
// group_norm_apply and the NCHW conv prologue run, so the result is theirs rounded once to bf16 (nearest
// even).
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/group_norm.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256;
constexpr int VPT = 8;                     // 16-byte vectors per thread, all loaded before any is used
constexpr int kChunk = THREADS * VPT;      // vectors per block: 32 KB in, 32 KB out
constexpr int kMaxC = 512;

// The 8 values of a vector of bf16 word w (two per 32-bit word; the low half is the lower address).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

__device__ __forceinline__ uint32_t norm_word(uint32_t w, float a0, float s0, float a1, float s1, bool use_swish) {
  return pack_bf16x2(group_norm_value(bf16_lo(w), a0, s0, use_swish), group_norm_value(bf16_hi(w), a1, s1, use_swish));
}

// Block (chunk, sample n): vectors [chunk * kChunk, +kChunk) of sample n's HW * C / 8, thread t taking
// t, t + THREADS, ... Vector i holds channels (i % C8) * 8 .. + 7 of pixel i / C8. No __restrict__: y may
// alias x (each vector is read, then written, by the same thread).
// 72 registers on sm_90 (3 blocks, 96 KB of loads in flight per SM, several times what the bandwidth-latency
// product needs); capping it at 64 for a 4th block spills.
__global__ void __launch_bounds__(THREADS)
group_norm_nhwc_kernel(const uint4* x, int C, int64_t HW, int per_sample, GroupNormIn g, uint4* y) {
  __shared__ __align__(16) float sc[kMaxC];
  __shared__ __align__(16) float sh[kMaxC];
  const int64_t n = blockIdx.y;
  const int C8 = C / 8;
  const int v0 = blockIdx.x * kChunk + threadIdx.x;
  const uint4* xs = x + n * per_sample;
  uint4* ys = y + n * per_sample;
  uint4 in[VPT];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = v0 + k * THREADS;
    if (i < per_sample) in[k] = xs[i];
  }
  // The tables while the loads above are in flight (the statistics are a few cached doubles).
  group_norm_tables(g, n, C, HW, sc, sh);
  __syncthreads();
  // The vector's channel group advances by THREADS % C8 per step: one division per thread.
  const int step = THREADS % C8;
  int c8 = v0 % C8;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = v0 + k * THREADS;
    if (i < per_sample) {
      // The vector's 8 scales and shifts: four 16-byte shared loads.
      const float4 a0 = reinterpret_cast<const float4*>(sc)[2 * c8], a1 = reinterpret_cast<const float4*>(sc)[2 * c8 + 1];
      const float4 s0 = reinterpret_cast<const float4*>(sh)[2 * c8], s1 = reinterpret_cast<const float4*>(sh)[2 * c8 + 1];
      uint4 o;
      o.x = norm_word(in[k].x, a0.x, s0.x, a0.y, s0.y, g.swish);
      o.y = norm_word(in[k].y, a0.z, s0.z, a0.w, s0.w, g.swish);
      o.z = norm_word(in[k].z, a1.x, s1.x, a1.y, s1.y, g.swish);
      o.w = norm_word(in[k].w, a1.z, s1.z, a1.w, s1.w, g.swish);
      ys[i] = o;
    }
    c8 += step;
    if (c8 >= C8) c8 -= C8;
  }
}

}  // namespace

void group_norm_nhwc(const uint16_t* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, uint16_t* y,
                     cudaStream_t stream) {
  check(N >= 0 && C > 0 && HW > 0, "group_norm_nhwc: sizes must be positive (N >= 0, C > 0, HW > 0), got N " +
                                       std::to_string(N) + ", C " + std::to_string(C) + ", HW " + std::to_string(HW));
  check(C % 8 == 0, "group_norm_nhwc: C must be a multiple of 8 (16-byte vectors), got " + std::to_string(C));
  check(C <= kMaxC, "group_norm_nhwc: C must be at most " + std::to_string(kMaxC) + ", got " + std::to_string(C));
  check(x && y, "group_norm_nhwc: x and y must be set");
  check(norm.stats && norm.gamma && norm.beta, "group_norm_nhwc: stats, gamma and beta must be set");
  check(norm.groups > 0 && C % norm.groups == 0, "group_norm_nhwc: C " + std::to_string(C) +
                                                     " is not a multiple of groups " + std::to_string(norm.groups));
  check(reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0,
        "group_norm_nhwc: x and y must be 16-byte aligned");
  check(HW * C / 8 < (int64_t(1) << 31) - kChunk, "group_norm_nhwc: a sample's HW * C is too large");
  check(N <= 65535, "group_norm_nhwc: at most 65535 samples per launch");
  if (N == 0) return;
  const int per_sample = static_cast<int>(HW * C / 8);
  dim3 grid(static_cast<unsigned>((per_sample + kChunk - 1) / kChunk), static_cast<unsigned>(N));
  VTV_LAUNCH("group_norm_nhwc_kernel", grid, THREADS, 0, stream, group_norm_nhwc_kernel,
             reinterpret_cast<const uint4*>(x), C, HW, per_sample, norm, reinterpret_cast<uint4*>(y));
}

}  // namespace vtv::cuda
