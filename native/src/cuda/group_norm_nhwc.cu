// GroupNorm (+ swish) of a bf16 NHWC feature map from its producer's statistics, as a pass of its own
// (vqgan_kernels.h, "The bf16 NHWC decoder"): the NHWC decoder normalises each map once, here, into the
// copy the next convolution reads as stored, instead of normalising every value at each of the 9 taps
// that load it. The pass is purely memory-bound (2 bytes in, 2 bytes out, a handful of flops per value),
// so it is built for bandwidth: threads move 16-byte vectors (8 channels), several of them in flight
// before any is used. It is the `groupnorm` family of the kernel variant registry (variants.h), with two
// variants that differ in where a vector's 8 scales and shifts come from:
//   vec8          (the default) 256 threads, each taking 8 vectors of a flat 2048-vector chunk of a sample;
//                 the block computes all C scales and shifts once into shared memory (group_norm_tables,
//                 C per 2048 vectors) and each vector reads its 8 pairs there (four 16-byte shared loads).
//                 No per-thread coefficient setup, but shared-memory reads per vector and a channel
//                 index that changes from vector to vector.
//   channel_regs  a (C/8) x k block, k pixels per step (~256 threads): thread (c8, p) owns one fixed
//                 8-channel vector, so its 8 scales and shifts are computed once, into registers
//                 (group_norm_coeffs), and it strides over pixels by k; no shared memory and no table
//                 reads per vector, but every thread does the coefficient setup (the group statistics
//                 and 8 channels' a, s), so it pays when each thread goes on to move many pixels (large
//                 HW), and vec8's flat chunks keep more blocks in flight on small maps (14x14).
// Which is faster on a shape is the tuner's to measure (`vtv tune`). Both run the fp32 arithmetic of
// group_norm.cuh (group_norm_coeffs, group_norm_value), the very code that group_norm_apply and the NCHW
// conv prologue run, so the result is theirs rounded once to bf16 (nearest even): the two variants are
// bit-identical.
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/group_norm.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/variants.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

// The 8 values of a vector of bf16 word w (two per 32-bit word; the low half is the lower address).
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

__device__ __forceinline__ uint32_t norm_word(uint32_t w, float a0, float s0, float a1, float s1, bool use_swish) {
  return pack_bf16x2(group_norm_value(bf16_lo(w), a0, s0, use_swish), group_norm_value(bf16_hi(w), a1, s1, use_swish));
}

constexpr int kMaxC = 512;

// ---- vec8 ------------------------------------------------------------------------------------------------

constexpr int THREADS = 256;
constexpr int VPT = 8;                     // 16-byte vectors per thread, all loaded before any is used
constexpr int kChunk = THREADS * VPT;      // vectors per block: 32 KB in, 32 KB out

// Block (chunk, sample n): vectors [chunk * kChunk, +kChunk) of sample n's HW * C / 8, thread t taking
// t, t + THREADS, ... Vector i holds channels (i % C8) * 8 .. + 7 of pixel i / C8. No __restrict__: y may
// alias x (each vector is read, then written, by the same thread).
// 72 registers on sm_90 (3 blocks, 96 KB of loads in flight per SM, several times what the bandwidth-latency
// product needs); capping it at 64 for a 4th block spills.
__global__ void __launch_bounds__(THREADS)
group_norm_nhwc_vec8_kernel(const uint4* x, int C, int64_t HW, int per_sample, GroupNormIn g, uint4* y) {
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

void launch_vec8(const uint16_t* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, uint16_t* y,
                 cudaStream_t stream) {
  const int per_sample = static_cast<int>(HW * C / 8);
  dim3 grid(static_cast<unsigned>((per_sample + kChunk - 1) / kChunk), static_cast<unsigned>(N));
  VTV_LAUNCH("group_norm_nhwc_vec8_kernel", grid, THREADS, 0, stream, group_norm_nhwc_vec8_kernel,
             reinterpret_cast<const uint4*>(x), C, HW, per_sample, norm, reinterpret_cast<uint4*>(y));
}

// ---- channel_regs ----------------------------------------------------------------------------------------

constexpr int kRegsThreads = 256;     // the block is (C/8) x k with k = kRegsThreads / (C/8)
constexpr int kRegsInFlight = 8;      // pixels a thread loads before it uses any
constexpr int kRegsMaxSteps = 4;      // steps of kRegsInFlight pixels per thread, at most
constexpr int kRegsBlocksPerSm = 4;   // fewer steps per thread until the launch has this many blocks per SM
                                      // (3 fit at once: a wave and more, so the last wave's tail is short)

// Block (b, sample n), threads (c8, p) = (threadIdx.x, threadIdx.y), C8 = blockDim.x = C / 8, k = blockDim.y:
// pixels [b * k * kRegsInFlight * steps, + k * kRegsInFlight * steps) of sample n. Thread (c8, p) owns
// channels 8 * c8 .. + 7: their scales and shifts are computed once, into registers, and it takes pixels
// p, p + k, p + 2k, ... of the block's range, kRegsInFlight of them loaded before any is used. At each of
// those loads the block's threads read k * C8 consecutive vectors (whole pixels): coalesced. No
// __restrict__: y may alias x (each vector is read, then written, by the same thread).
__global__ void __launch_bounds__(kRegsThreads)
group_norm_nhwc_channel_regs_kernel(const uint4* x, int C, int HW, int steps, GroupNormIn g, uint4* y) {
  const int64_t n = blockIdx.y;
  const int C8 = blockDim.x, k = blockDim.y, c8 = threadIdx.x;
  const int64_t per_sample = int64_t(HW) * C8;
  const uint4* xs = x + n * per_sample + c8;
  uint4* ys = y + n * per_sample + c8;
  const int span = k * kRegsInFlight;
  int p = blockIdx.x * span * steps + threadIdx.y;
  uint4 in[kRegsInFlight];
  const auto load = [&] {
#pragma unroll
    for (int u = 0; u < kRegsInFlight; ++u) {
      const int q = p + u * k;
      if (q < HW) in[u] = xs[q * C8];
    }
  };
  load();
  // The thread's 8 scales and shifts while its first loads are in flight.
  float a[8], s[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) group_norm_coeffs(g, n, C, HW, 8 * c8 + j, a[j], s[j]);
  for (int step = 0;;) {
#pragma unroll
    for (int u = 0; u < kRegsInFlight; ++u) {
      const int q = p + u * k;
      if (q < HW) {
        uint4 o;
        o.x = norm_word(in[u].x, a[0], s[0], a[1], s[1], g.swish);
        o.y = norm_word(in[u].y, a[2], s[2], a[3], s[3], g.swish);
        o.z = norm_word(in[u].z, a[4], s[4], a[5], s[5], g.swish);
        o.w = norm_word(in[u].w, a[6], s[6], a[7], s[7], g.swish);
        ys[q * C8] = o;
      }
    }
    p += span;
    if (++step == steps || p >= HW) break;
    load();
  }
}

// The current device's SM count, asked once per device (launches happen inside graph captures).
int sm_count() {
  static std::atomic<int> counts[kMaxVariantDevices];
  int dev = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&dev));
  check(dev >= 0 && dev < kMaxVariantDevices, "group_norm_nhwc: device " + std::to_string(dev) + " out of range");
  int sms = counts[dev].load();
  if (sms == 0) {
    VTV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    counts[dev].store(sms);
  }
  return sms;
}

void launch_channel_regs(const uint16_t* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, uint16_t* y,
                         cudaStream_t stream) {
  const int C8 = C / 8, k = kRegsThreads / C8, span = k * kRegsInFlight;
  // The most pixels per thread (the coefficient setup amortised) that still gives every SM a few blocks.
  const int sms = sm_count();
  int steps = kRegsMaxSteps;
  const auto blocks = [&](int st) { return (HW + int64_t(span) * st - 1) / (int64_t(span) * st); };
  while (steps > 1 && N * blocks(steps) < int64_t(kRegsBlocksPerSm) * sms) steps /= 2;
  dim3 grid(static_cast<unsigned>(blocks(steps)), static_cast<unsigned>(N));
  dim3 block(static_cast<unsigned>(C8), static_cast<unsigned>(k));
  VTV_LAUNCH("group_norm_nhwc_channel_regs_kernel", grid, block, 0, stream, group_norm_nhwc_channel_regs_kernel,
             reinterpret_cast<const uint4*>(x), C, static_cast<int>(HW), steps, norm, reinterpret_cast<uint4*>(y));
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
  // Both variants index a sample's vectors (and channel_regs its pixels, one step past the last) in int.
  check(HW * C / 8 < (int64_t(1) << 31) - kChunk, "group_norm_nhwc: a sample's HW * C is too large");
  check(N <= 65535, "group_norm_nhwc: at most 65535 samples per launch");
  if (N == 0) return;
  const KernelVariant& v = choose_variant(group_norm_shape(N, C, HW, norm.groups));
  if (std::string(v.name) == "channel_regs") {
    launch_channel_regs(x, N, C, HW, norm, y, stream);
  } else {
    launch_vec8(x, N, C, HW, norm, y, stream);
  }
  note_variant_run(KernelFamily::GroupNorm, v.name);
}

}  // namespace vtv::cuda
