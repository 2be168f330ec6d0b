// The "baseline" variant of the bf16 convolution (variants.h) as an implicit GEMM on tensor cores: mma.sync m16n8k16, bf16 in, fp32 accumulation,
// the tiling and fragment layout of gemm_bf16.cu (block 128 output channels x 128 output pixels x 32 k,
// 8 warps as 2 x 4, each 64 x 32; rows padded to 40 bf16). A is the bf16 weight [Co][K] as stored; B is
// gathered from the fp32 input by conv_gather (GroupNorm + swish prologue, padding, upsampling) and
// rounded to bf16 as it is staged. Register-staged double buffering as in gemm_bf16.cu (k_loop.cuh,
// mma_bf16.cuh). Also the conv2d() dispatcher and conv2d_bf16, which runs the variant the registry
// chooses for a 3x3 shape (conv_variants.h).
#include <cuda_bf16.h>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/conv_common.cuh"
#include "cuda/k_loop.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/conv_variants.h"

namespace vtv::cuda {

void conv2d_f32(const ConvArgs& a, cudaStream_t stream);  // conv_f32.cu

namespace {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256, LDS = BK + 8;

template <int KS, bool DOWN>
__global__ void __launch_bounds__(THREADS) conv_bf16_kernel(ConvParams p, const __nv_bfloat16* __restrict__ Wt) {
  __shared__ __align__(16) __nv_bfloat16 As[2][BM][LDS];  // weights [co][k]
  __shared__ __align__(16) __nv_bfloat16 Bs[2][BN][LDS];  // gathered input [pixel][k]: B "col"
  __shared__ float sc[kConvMaxCi], sh[kConvMaxCi];        // GroupNorm prologue tables
  __shared__ double row_sum[BM], row_sq[BM];              // GroupNorm statistics of the output rows
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile origin: channels 64*wm, pixels 32*wn
  const int g = lane >> 2, t = lane & 3;    // mma fragment coordinates
  const int p0 = blockIdx.x * BN, c0 = blockIdx.y * BM;
  const int64_t n = blockIdx.z;
  const float* xn = p.x + n * p.Ci * int64_t(p.H) * p.W;
  conv_block_begin<BM, THREADS>(p, n, sc, sh, row_sum, row_sq);

  // W tile: 128 rows x 32 k = 512 chunks of 8 bf16, two per thread (row idx/4, k 8*(idx%4)).
  // B tile: thread owns pixel column bc and the k pairs 2*kp, 2*kp+1 for kp = (tid >> 7) + 2i, i < 8;
  // consecutive threads read consecutive pixels of one input row.
  const int bc = tid & (BN - 1), bkp = tid >> 7;
  const ConvPixel px = conv_pixel(p, p0 + bc);
  uint4 ra[2];
  float rb[8][2];
  auto load = [&](int k0) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * THREADS;
      const int row = c0 + (idx >> 2);
      const int k = k0 + (idx & 3) * 8;  // K % 8 == 0: k < K means k..k+7 < K
      ra[i] = (row < p.Co && k < p.K) ? __ldg(reinterpret_cast<const uint4*>(Wt + int64_t(row) * p.K + k))
                                      : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int k = k0 + 2 * (bkp + 2 * i);
      rb[i][0] = conv_gather<KS, DOWN>(p, xn, px, k, sc, sh);
      rb[i][1] = conv_gather<KS, DOWN>(p, xn, px, k + 1, sc, sh);
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * THREADS;
      *reinterpret_cast<uint4*>(&As[buf][idx >> 2][(idx & 3) * 8]) = ra[i];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      *reinterpret_cast<uint32_t*>(&Bs[buf][bc][2 * (bkp + 2 * i)]) = pack_bf16x2(rb[i][0], rb[i][1]);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  double_buffered_k_loop<BK>(p.K, load, store,
                             [&](int buf) { mma_warp_tile_64x32<BK>(acc, As[buf], Bs[buf], wm, wn, g, t); });

  // C fragment: c0, c1 at (g, 2t), (g, 2t+1); c2, c3 at (g+8, 2t), (g+8, 2t+1). Rows are channels,
  // columns pixels.
  const int P = p.Ho * p.Wo;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = wm * 64 + mt * 16 + g + half * 8;
      const int co = c0 + r;
      double s = 0.0, q = 0.0;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int pix = p0 + wn * 32 + nt * 8 + 2 * t + c;
          if (co < p.Co && pix < P) {
            const float v = conv_store(p, n, co, pix, acc[mt][nt][half * 2 + c]);
            s += v;
            q += double(v) * double(v);
          }
        }
      }
      // The four threads of a quad (same g) hold this row's 32 pixels of the warp tile.
      if (p.stats_out) conv_row_stats_add<4>(s, q, t == 0, &row_sum[r], &row_sq[r]);
    }
  }
  conv_block_end<BM>(p, n, c0, row_sum, row_sq);
}

}  // namespace

void conv2d_bf16_baseline(const ConvArgs& a, cudaStream_t stream) {
  validate_conv(a, "conv2d_bf16");
  check(a.w_bf16 != nullptr && reinterpret_cast<uintptr_t>(a.w_bf16) % 16 == 0,
        "conv2d_bf16: w_bf16 must be set and 16-byte aligned");
  if (a.stats_out) {
    VTV_CUDA_CHECK(cudaMemsetAsync(a.stats_out, 0, sizeof(double) * 2 * size_t(a.N) * a.stats_groups, stream));
  }
  if (a.N == 0) return;
  check(a.N <= 65535, "conv2d_bf16: at most 65535 samples per launch, got " + std::to_string(a.N));
  const ConvParams p = conv_params(a);
  dim3 grid(static_cast<unsigned>((int64_t(p.Ho) * p.Wo + BN - 1) / BN), static_cast<unsigned>((a.Co + BM - 1) / BM),
            static_cast<unsigned>(a.N));
  const auto* w = reinterpret_cast<const __nv_bfloat16*>(a.w_bf16);
  if (a.downsample2x) {
    VTV_LAUNCH("conv_bf16_kernel", grid, THREADS, 0, stream, conv_bf16_kernel<3, true>, p, w);
  } else if (a.k == 3) {
    VTV_LAUNCH("conv_bf16_kernel", grid, THREADS, 0, stream, conv_bf16_kernel<3, false>, p, w);
  } else {
    VTV_LAUNCH("conv_bf16_kernel", grid, THREADS, 0, stream, conv_bf16_kernel<1, false>, p, w);
  }
}

void conv2d_bf16(const ConvArgs& a, cudaStream_t stream) {
  if (a.k == 3 && !a.downsample2x && a.w_bf16) {
    const KernelVariant& v = choose_variant(conv3x3_shape(a.N, a.Ci, a.Co, a.H, a.W, a.upsample2x));
    // The chosen variant may still lack what this call needs (a workspace): then the baseline runs.
    if (std::string(v.name) == "nhwc" && conv_nhwc_can_run(a)) {
      conv2d_bf16_nhwc(a, stream);
      note_variant_run(KernelFamily::Conv3x3, "nhwc");
      return;
    }
    if (std::string(v.name) == "wgmma" && conv_wgmma_can_run(a)) {
      conv2d_bf16_wgmma(a, 128, stream);
      note_variant_run(KernelFamily::Conv3x3, "wgmma");
      return;
    }
    if (std::string(v.name) == "wgmma_n256" && conv_wgmma_can_run(a)) {
      conv2d_bf16_wgmma(a, 256, stream);
      note_variant_run(KernelFamily::Conv3x3, "wgmma_n256");
      return;
    }
  }
  conv2d_bf16_baseline(a, stream);
  if (a.k == 3 && !a.downsample2x) note_variant_run(KernelFamily::Conv3x3, "baseline");
}

void conv2d(const ConvArgs& a, cudaStream_t stream) {
  check((a.w_f32 != nullptr) != (a.w_bf16 != nullptr), "conv2d: set exactly one of w_f32 (fp32 path) and w_bf16");
  if (a.w_f32) {
    conv2d_f32(a, stream);
  } else {
    conv2d_bf16(a, stream);
  }
}

}  // namespace vtv::cuda
