// The convolution as an implicit GEMM with plain fp32 FMA (the parity path): the tiling of gemm_f32.cu
// (64 output channels x 64 output pixels x 16 k, 4x4 outputs per thread, register-staged double
// buffering: k_loop.cuh, fma_tile_f32.cuh), with B gathered from the input by conv_gather (GroupNorm +
// swish prologue, padding, upsampling) and the epilogue of conv_common.cuh (bias, residual, GroupNorm
// statistics of the output).
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/conv_common.cuh"
#include "cuda/fma_tile_f32.cuh"
#include "cuda/k_loop.cuh"

namespace vtv::cuda {

namespace {

constexpr int BM = 64, BN = 64, BK = 16, THREADS = 256, PAD = 4;

// Tiles are stored k-major (As[k][co], Bs[k][pixel]); thread (ty, tx) = (tid / 16, tid % 16) owns
// channels 4*ty.. and pixels 4*tx.. of the tile.
template <int KS, bool DOWN>
__global__ void __launch_bounds__(THREADS) conv_f32_kernel(ConvParams p, const float* __restrict__ Wt) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  __shared__ float sc[kConvMaxCi], sh[kConvMaxCi];
  __shared__ double row_sum[BM], row_sq[BM];
  const int tid = threadIdx.x;
  const int p0 = blockIdx.x * BN, c0 = blockIdx.y * BM;
  const int64_t n = blockIdx.z;
  const float* xn = p.x + n * p.Ci * int64_t(p.H) * p.W;
  conv_block_begin<BM, THREADS>(p, n, sc, sh, row_sum, row_sq);

  // Loader: one float4 of W (row lrow, k lk..lk+3) and four gathered inputs (pixel bc, k bk + 4i).
  const int lrow = tid >> 2, lk = (tid & 3) * 4;
  const int arow = c0 + lrow;
  const int bc = tid & (BN - 1), bk = tid >> 6;
  const ConvPixel px = conv_pixel(p, p0 + bc);
  float4 ra;
  float rb[4];
  auto load = [&](int k0) {
    const int k = k0 + lk;  // K % 8 == 0: k < K means all four are in range
    ra = (arow < p.Co && k < p.K) ? __ldg(reinterpret_cast<const float4*>(Wt + int64_t(arow) * p.K + k))
                                  : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int i = 0; i < 4; ++i) rb[i] = conv_gather<KS, DOWN>(p, xn, px, k0 + bk + 4 * i, sc, sh);
  };
  auto store = [&](int buf) {
    As[buf][lk + 0][lrow] = ra.x;
    As[buf][lk + 1][lrow] = ra.y;
    As[buf][lk + 2][lrow] = ra.z;
    As[buf][lk + 3][lrow] = ra.w;
#pragma unroll
    for (int i = 0; i < 4; ++i) Bs[buf][bk + 4 * i][bc] = rb[i];
  };

  const int ty = tid >> 4, tx = tid & 15;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  double_buffered_k_loop<BK>(p.K, load, store, [&](int buf) { fma_tile_4x4(acc, As[buf], Bs[buf], ty, tx); });

  const int P = p.Ho * p.Wo;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty * 4 + i, co = c0 + r;
    double s = 0.0, q = 0.0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int pix = p0 + tx * 4 + j;
      if (co < p.Co && pix < P) {
        const float v = conv_store(p, n, co, pix, acc[i][j]);
        s += v;
        q += double(v) * double(v);
      }
    }
    // The 16 threads with this ty (one half-warp) hold the row's 64 pixels.
    if (p.stats_out) conv_row_stats_add<16>(s, q, tx == 0, &row_sum[r], &row_sq[r]);
  }
  conv_block_end<BM>(p, n, c0, row_sum, row_sq);
}

}  // namespace

void conv2d_f32(const ConvArgs& a, cudaStream_t stream) {
  validate_conv(a, "conv2d_f32");
  check(a.w_f32 != nullptr && reinterpret_cast<uintptr_t>(a.w_f32) % 16 == 0,
        "conv2d_f32: w_f32 must be set and 16-byte aligned");
  if (a.stats_out) {
    VTV_CUDA_CHECK(cudaMemsetAsync(a.stats_out, 0, sizeof(double) * 2 * size_t(a.N) * a.stats_groups, stream));
  }
  if (a.N == 0) return;
  check(a.N <= 65535, "conv2d_f32: at most 65535 samples per launch, got " + std::to_string(a.N));
  const ConvParams p = conv_params(a);
  dim3 grid(static_cast<unsigned>((int64_t(p.Ho) * p.Wo + BN - 1) / BN), static_cast<unsigned>((a.Co + BM - 1) / BM),
            static_cast<unsigned>(a.N));
  if (a.downsample2x) {
    VTV_LAUNCH("conv_f32_kernel", grid, THREADS, 0, stream, conv_f32_kernel<3, true>, p, a.w_f32);
  } else if (a.k == 3) {
    VTV_LAUNCH("conv_f32_kernel", grid, THREADS, 0, stream, conv_f32_kernel<3, false>, p, a.w_f32);
  } else {
    VTV_LAUNCH("conv_f32_kernel", grid, THREADS, 0, stream, conv_f32_kernel<1, false>, p, a.w_f32);
  }
}

}  // namespace vtv::cuda
