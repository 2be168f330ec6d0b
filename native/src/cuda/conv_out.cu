// The decoder's last step (docs/method.md#vqgan steps 3-4): norm_out + swish (from the statistics
// left by the producing convolution), conv_out 3x3 to 3 channels, clamp to [-1, 1], (x + 1) / 2. Only 3
// output channels, so a GEMM tile would be almost all padding: one thread per output pixel computes its
// three sums in fp32 FMA (in both precisions), with the weights and the GroupNorm tables in shared memory.
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

}  // namespace vtv::cuda
