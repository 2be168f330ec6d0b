// The "baseline" variant of the bf16 Linear (variants.h) on tensor cores: mma.sync m16n8k16 (bf16 in, fp32 accumulate), sm_80 and newer.
// Block tile 128x128x32, 8 warps as 2 (M) x 4 (N), each warp 64x32 = 4x4 mma tiles. Activations arrive in
// fp32 and are rounded to bf16 (nearest even) as they are staged into shared memory; weights are bf16 in
// global memory. Register-staged double buffering: the next k tile is loaded into registers while the
// current one is multiplied, then stored to the other buffer (k_loop.cuh). Fragments are read with 32-bit
// shared loads straight from the PTX ISA fragment tables (mma_bf16.cuh), with rows padded to 40 bf16
// (80 bytes) so that the eight row groups of a warp fall in distinct banks.
// Also linear_bf16, which runs the variant the registry chooses for the shape (gemm_variants.h).
#include <cuda_bf16.h>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/gemm_epilogue.cuh"
#include "cuda/k_loop.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/gemm_variants.h"
#include "cuda/variants.h"

namespace vtv::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256, LDS = BK + 8;

__global__ void __launch_bounds__(THREADS)
gemm_bf16_kernel(const float* __restrict__ X, const __nv_bfloat16* __restrict__ W, int64_t M, int N, int K,
                 EpilogueParams ep) {
  __shared__ __align__(16) __nv_bfloat16 As[2][BM][LDS];  // [m][k]
  __shared__ __align__(16) __nv_bfloat16 Bs[2][BN][LDS];  // [n][k]: W's own layout, i.e. B "col"
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile origin: rows 64*wm, columns 32*wn
  const int g = lane >> 2, t = lane & 3;    // mma fragment coordinates (groupID, threadID_in_group)
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int n0 = blockIdx.x * BN;

  // A tile: 128 rows x 32 k = 1024 float4, four per thread (row idx/8, k 4*(idx%8)).
  // W tile: 128 rows x 32 k = 512 chunks of 8 bf16, two per thread (row idx/4, k 8*(idx%4)).
  float4 ra[4];
  uint4 rb[2];
  auto load = [&](int k0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = tid + i * THREADS;
      const int64_t row = m0 + (idx >> 3);
      const int k = k0 + (idx & 7) * 4;  // K % 8 == 0: k < K means k..k+3 < K
      ra[i] = (row < M && k < K) ? __ldg(reinterpret_cast<const float4*>(X + row * K + k))
                                 : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * THREADS;
      const int n = n0 + (idx >> 2);
      const int k = k0 + (idx & 3) * 8;  // k < K means k..k+7 < K
      rb[i] = (n < N && k < K) ? __ldg(reinterpret_cast<const uint4*>(W + int64_t(n) * K + k)) : make_uint4(0, 0, 0, 0);
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = tid + i * THREADS;
      uint2 v;
      v.x = pack_bf16x2(ra[i].x, ra[i].y);
      v.y = pack_bf16x2(ra[i].z, ra[i].w);
      *reinterpret_cast<uint2*>(&As[buf][idx >> 3][(idx & 7) * 4]) = v;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int idx = tid + i * THREADS;
      *reinterpret_cast<uint4*>(&Bs[buf][idx >> 2][(idx & 3) * 8]) = rb[i];
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  double_buffered_k_loop<BK>(K, load, store,
                             [&](int buf) { mma_warp_tile_64x32<BK>(acc, As[buf], Bs[buf], wm, wn, g, t); });

  mma_tile_epilogue(ep, acc, m0 + wm * 64, n0 + wn * 32, g, t, M, N);
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, int64_t n, __nv_bfloat16* __restrict__ y) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

}  // namespace

void linear_bf16_baseline(const LinearArgs& a, cudaStream_t stream) {
  validate_linear(a, "linear_bf16");
  check(a.w_bf16 != nullptr, "linear_bf16: w_bf16 is null");
  check(a.x != nullptr, "linear_bf16 (baseline): needs x, the fp32 activations");
  if (a.M == 0) return;
  const int64_t mt = (a.M + BM - 1) / BM;
  check(mt <= 65535, "linear_bf16: M = " + std::to_string(a.M) + " needs more than 65535 row tiles");
  dim3 grid(static_cast<unsigned>((a.N + BN - 1) / BN), static_cast<unsigned>(mt));
  VTV_LAUNCH("gemm_bf16_kernel", grid, THREADS, 0, stream, gemm_bf16_kernel, a.x,
             reinterpret_cast<const __nv_bfloat16*>(a.w_bf16), a.M, static_cast<int>(a.N), static_cast<int>(a.K),
             epilogue_params(a));
}

void linear_bf16(const LinearArgs& a, cudaStream_t stream) {
  const KernelVariant& v = choose_variant(gemm_shape(a.M, a.N, a.K, a.x_bf16 != nullptr));
  const std::string name = v.name;
  // A variant chosen for the shape may still lack what this call needs (cuBLASLt writes through y).
  if (name == "pipelined" && a.x_bf16) {
    linear_bf16_pipelined(a, stream);
    note_variant_run(KernelFamily::Gemm, "pipelined");
  } else if (name == "wgmma" && a.x_bf16) {
    linear_bf16_wgmma(a, stream);
    note_variant_run(KernelFamily::Gemm, "wgmma");
  } else if (name == "cublaslt" && a.x_bf16 && a.y && !(a.epilogue == Epilogue::Gelu && a.residual)) {
    linear_bf16_cublaslt(a, stream);
    note_variant_run(KernelFamily::Gemm, "cublaslt");
  } else if (a.x) {
    linear_bf16_baseline(a, stream);
    note_variant_run(KernelFamily::Gemm, "baseline");
  } else {
    linear_bf16_pipelined(a, stream);  // only x_bf16 is set
    note_variant_run(KernelFamily::Gemm, "pipelined");
  }
}

void linear(const LinearArgs& a, cudaStream_t stream) {
  check((a.w_f32 != nullptr) != (a.w_bf16 != nullptr), "linear: set exactly one of w_f32 (fp32 path) and w_bf16");
  if (a.w_f32) {
    linear_f32(a, stream);
  } else {
    linear_bf16(a, stream);
  }
}

void f32_to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t stream) {
  if (n <= 0) return;
  VTV_LAUNCH("f32_to_bf16_kernel", static_cast<unsigned>((n + 255) / 256), 256, 0, stream, f32_to_bf16_kernel, x, n,
             reinterpret_cast<__nv_bfloat16*>(y));
}

}  // namespace vtv::cuda
