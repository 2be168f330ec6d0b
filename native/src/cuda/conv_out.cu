// The decoder's last step (docs/method.md#vqgan steps 3-4): norm_out + swish (from the statistics
// left by the producing convolution), conv_out 3x3 to 3 channels, clamp to [-1, 1], (x + 1) / 2. Only 3
// output channels, so a GEMM tile would be almost all padding: one thread per output pixel computes its
// three sums in fp32 FMA (in both precisions), with the weights and the GroupNorm tables in shared memory.
// conv_out_pixels_nhwc is the same step for the bf16 NHWC decoder, whose map group_norm_nhwc has already
// normalised: each thread reads its 3x3 neighbourhood 8 channels at a time as 16-byte vectors, and sums
// in the same order as conv_out_kernel (channel, then tap, then output channel), so on the same input
// values the two kernels give the same bits.
#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/conv_common.cuh"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256;

__global__ void __launch_bounds__(THREADS)
conv_out_kernel(const float* __restrict__ x, int Ci, int H, int W, GroupNormIn g, const float* __restrict__ w,
                const float* __restrict__ bias, float* __restrict__ pixels) {
  VTV_DYNAMIC_SHARED(float, smem);
  float* sc = smem;            // [Ci]
  float* sh = sc + Ci;         // [Ci]
  float* ws = sh + Ci;         // [3][Ci][9]
  const int64_t n = blockIdx.y;
  const int64_t HW = int64_t(H) * W;
  if (g.stats) group_norm_tables(g, n, Ci, HW, sc, sh);
  for (int i = threadIdx.x; i < 27 * Ci; i += THREADS) ws[i] = w[i];
  __syncthreads();
  const int64_t pix = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (pix >= HW) return;
  const int oy = static_cast<int>(pix / W), ox = static_cast<int>(pix % W);
  const float* xn = x + n * Ci * HW;
  float acc[3] = {0.0f, 0.0f, 0.0f};
  for (int ci = 0; ci < Ci; ++ci) {
    const float* xc = xn + int64_t(ci) * HW;
#pragma unroll
    for (int ky = 0; ky < 3; ++ky) {
      const int iy = oy + ky - 1;
#pragma unroll
      for (int kx = 0; kx < 3; ++kx) {
        const int ix = ox + kx - 1;
        float v = 0.0f;  // padding: zero after GroupNorm + swish
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
          v = __ldg(xc + int64_t(iy) * W + ix);
          if (g.stats) v = group_norm_value(v, sc[ci], sh[ci], g.swish);
        }
#pragma unroll
        for (int co = 0; co < 3; ++co) acc[co] = fmaf(ws[(co * Ci + ci) * 9 + ky * 3 + kx], v, acc[co]);
      }
    }
  }
#pragma unroll
  for (int co = 0; co < 3; ++co) {
    float v = acc[co] + bias[co];
    v = fminf(1.0f, fmaxf(-1.0f, v));
    pixels[(n * 3 + co) * HW + pix] = (v + 1.0f) / 2.0f;
  }
}

// x [N][H][W][Ci] bf16, already normalised; weights rearranged into shared memory as ws[ci][tap][co], co
// padded to 4, so that the inner loops (tap, then output channel) read one float4 per tap, consecutive
// for a channel and the same address in every thread (a broadcast): one shared load per 3 FMAs.
// 102 registers on sm_90 (2 blocks per SM; ptxas keeps a channel's weights in registers): capping it at
// 85 for a third block spills.
__global__ void __launch_bounds__(THREADS)
conv_out_nhwc_kernel(const uint4* __restrict__ x, int Ci, int H, int W, const float* __restrict__ w,
                     const float* __restrict__ bias, float* __restrict__ pixels) {
  VTV_DYNAMIC_SHARED(float4, ws);  // [Ci][9], .w unused
  const int64_t n = blockIdx.y;
  const int64_t HW = int64_t(H) * W;
  for (int i = threadIdx.x; i < 27 * Ci; i += THREADS) {
    const int co = i / (9 * Ci), rest = i - co * 9 * Ci, ci = rest / 9, tap = rest - ci * 9;  // i = w's [co][ci][tap]
    reinterpret_cast<float*>(ws + ci * 9 + tap)[co] = w[i];
  }
  __syncthreads();
  const int64_t pix = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (pix >= HW) return;
  const int oy = static_cast<int>(pix / W), ox = static_cast<int>(pix % W);
  const int C8 = Ci / 8;
  const uint4* xn = x + n * HW * C8;
  // The 9 taps' offsets in vectors within the sample (int: checked at launch), -1 in the padding (zero: the
  // map is already normalised).
  int off[9];
#pragma unroll
  for (int ky = 0; ky < 3; ++ky)
#pragma unroll
    for (int kx = 0; kx < 3; ++kx) {
      const int iy = oy + ky - 1, ix = ox + kx - 1;
      off[ky * 3 + kx] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? (iy * W + ix) * C8 : -1;
    }
  float acc[3] = {0.0f, 0.0f, 0.0f};
  for (int c8 = 0; c8 < C8; ++c8) {
    uint32_t v[9][4];  // the 9 taps' 8 channels, bf16 pairs
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      const uint4 q = off[t] >= 0 ? __ldg(xn + off[t] + c8) : make_uint4(0u, 0u, 0u, 0u);
      v[t][0] = q.x;
      v[t][1] = q.y;
      v[t][2] = q.z;
      v[t][3] = q.w;
    }
    const float4* wc = ws + c8 * 8 * 9;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int t = 0; t < 9; ++t) {
        const uint32_t word = v[t][j / 2];
        const float xv = __uint_as_float((j & 1) ? (word & 0xFFFF0000u) : (word << 16));
        const float4 wt = wc[j * 9 + t];
        acc[0] = fmaf(wt.x, xv, acc[0]);
        acc[1] = fmaf(wt.y, xv, acc[1]);
        acc[2] = fmaf(wt.z, xv, acc[2]);
      }
    }
  }
#pragma unroll
  for (int co = 0; co < 3; ++co) {
    float v = acc[co] + bias[co];
    v = fminf(1.0f, fmaxf(-1.0f, v));
    pixels[(n * 3 + co) * HW + pix] = (v + 1.0f) / 2.0f;
  }
}

}  // namespace

void conv_out_pixels(const float* x, int64_t N, int Ci, int H, int W, const GroupNormIn& norm, const float* w,
                     const float* bias, float* pixels, cudaStream_t stream) {
  check(N >= 0 && Ci > 0 && H > 0 && W > 0, "conv_out_pixels: sizes must be positive");
  check(Ci <= kConvMaxCi, "conv_out_pixels: Ci must be at most " + std::to_string(kConvMaxCi));
  check(x && w && bias && pixels, "conv_out_pixels: x, w, bias and pixels must be set");
  if (norm.stats) {
    check(norm.gamma && norm.beta && norm.groups > 0 && Ci % norm.groups == 0,
          "conv_out_pixels: the GroupNorm prologue needs gamma, beta and groups dividing Ci");
  }
  if (N == 0) return;
  check(N <= 65535, "conv_out_pixels: at most 65535 samples per launch");
  const size_t smem = sizeof(float) * size_t(29) * Ci;  // 113 KB at Ci = 512
  if (smem > 48 * 1024) {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(conv_out_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  dim3 grid(static_cast<unsigned>((int64_t(H) * W + THREADS - 1) / THREADS), static_cast<unsigned>(N));
  VTV_LAUNCH("conv_out_kernel", grid, THREADS, smem, stream, conv_out_kernel, x, Ci, H, W, norm, w, bias, pixels);
}

void conv_out_pixels_nhwc(const uint16_t* x, int64_t N, int Ci, int H, int W, const float* w, const float* bias,
                          float* pixels, cudaStream_t stream) {
  check(N >= 0 && Ci > 0 && H > 0 && W > 0, "conv_out_pixels_nhwc: sizes must be positive");
  check(Ci % 8 == 0, "conv_out_pixels_nhwc: Ci must be a multiple of 8 (16-byte vectors), got " + std::to_string(Ci));
  check(Ci <= kConvMaxCi, "conv_out_pixels_nhwc: Ci must be at most " + std::to_string(kConvMaxCi));
  check(x && w && bias && pixels, "conv_out_pixels_nhwc: x, w, bias and pixels must be set");
  check(reinterpret_cast<uintptr_t>(x) % 16 == 0, "conv_out_pixels_nhwc: x must be 16-byte aligned");
  check(int64_t(H) * W * Ci < (int64_t(1) << 31), "conv_out_pixels_nhwc: a sample's H * W * Ci is too large");
  if (N == 0) return;
  check(N <= 65535, "conv_out_pixels_nhwc: at most 65535 samples per launch");
  const size_t smem = sizeof(float) * size_t(36) * Ci;  // 72 KB at Ci = 512, 18 KB at the decoder's 128
  if (smem > 48 * 1024) {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(conv_out_nhwc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  }
  dim3 grid(static_cast<unsigned>((int64_t(H) * W + THREADS - 1) / THREADS), static_cast<unsigned>(N));
  VTV_LAUNCH("conv_out_nhwc_kernel", grid, THREADS, smem, stream, conv_out_nhwc_kernel, reinterpret_cast<const uint4*>(x),
             Ci, H, W, w, bias, pixels);
}

}  // namespace vtv::cuda
