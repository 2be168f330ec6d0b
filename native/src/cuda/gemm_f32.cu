// The fp32 Linear (parity mode): a shared-memory tiled SGEMM with plain FMA, 64x64 tiles, 4x4 outputs
// per thread, register-staged double buffering; epilogue and argmax as gemm_epilogue.cuh.
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/gemm_epilogue.cuh"

namespace vtv::cuda {

namespace {

constexpr int BM = 64, BN = 64, BK = 16, THREADS = 256, PAD = 4;

// Tiles are stored k-major (As[k][m], Bs[k][n]) so that a thread reads its 4 rows and 4 columns of one k
// as two float4s. Thread (ty, tx) = (tid / 16, tid % 16) owns rows 4*ty.. and columns 4*tx.. of the tile.
__global__ void __launch_bounds__(THREADS)
gemm_f32_kernel(const float* __restrict__ X, const float* __restrict__ W, int64_t M, int N, int K, EpilogueParams ep) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int tid = threadIdx.x;
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int n0 = blockIdx.x * BN;
  // Loader: each thread moves one float4 of A (row lrow, k lk..lk+3) and one of W per k tile.
  const int lrow = tid >> 2, lk = (tid & 3) * 4;
  const int64_t arow = m0 + lrow;
  const int brow = n0 + lrow;
  float4 ra, rb;
  auto load = [&](int k0) {
    const int k = k0 + lk;  // K % 8 == 0, so k < K means all four are in range
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    ra = (arow < M && k < K) ? __ldg(reinterpret_cast<const float4*>(X + arow * K + k)) : zero;
    rb = (brow < N && k < K) ? __ldg(reinterpret_cast<const float4*>(W + int64_t(brow) * K + k)) : zero;
  };
  auto store = [&](int buf) {
    As[buf][lk + 0][lrow] = ra.x;
    As[buf][lk + 1][lrow] = ra.y;
    As[buf][lk + 2][lrow] = ra.z;
    As[buf][lk + 3][lrow] = ra.w;
    Bs[buf][lk + 0][lrow] = rb.x;
    Bs[buf][lk + 1][lrow] = rb.y;
    Bs[buf][lk + 2][lrow] = rb.z;
    Bs[buf][lk + 3][lrow] = rb.w;
  };

  const int ty = tid >> 4, tx = tid & 15;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  const int KT = (K + BK - 1) / BK;
  load(0);
  store(0);
  __syncthreads();
  for (int kt = 0; kt < KT; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < KT) load((kt + 1) * BK);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    // The other buffer was last read in iteration kt-1, which ended with the barrier below.
    if (kt + 1 < KT) store(cur ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = m0 + ty * 4 + i;
    unsigned long long best = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = n0 + tx * 4 + j;
      if (row < M && col < N) {
        const float v = epilogue_value(ep, row, col, N, acc[i][j]);
        epilogue_store(ep, row, col, N, v);
        best = max_key(best, argmax_key(v, col));
      }
    }
    if (ep.keys) {
      // The 16 threads of a half-warp share this row; fold their candidates, then one atomic.
#pragma unroll
      for (int off = 8; off >= 1; off >>= 1) best = max_key(best, __shfl_xor_sync(0xFFFFFFFFu, best, off));
      if (tx == 0 && row < M) atomicMax(ep.keys + row, best);
    }
  }
}

}  // namespace

void linear_f32(const LinearArgs& a, cudaStream_t stream) {
  validate_linear(a, "linear_f32");
  check(a.w_f32 != nullptr, "linear_f32: w_f32 is null");
  check(a.x != nullptr, "linear_f32: x is null (the fp32 path reads fp32 activations)");
  if (a.M == 0) return;
  const int64_t mt = (a.M + BM - 1) / BM;
  check(mt <= 65535, "linear_f32: M = " + std::to_string(a.M) + " needs more than 65535 row tiles");
  dim3 grid(static_cast<unsigned>((a.N + BN - 1) / BN), static_cast<unsigned>(mt));
  VTV_LAUNCH("gemm_f32_kernel", grid, THREADS, 0, stream, gemm_f32_kernel, a.x, a.w_f32, a.M, static_cast<int>(a.N),
             static_cast<int>(a.K), epilogue_params(a));
}

}  // namespace vtv::cuda
