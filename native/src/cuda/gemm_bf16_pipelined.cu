// The "pipelined" variant of the bf16 Linear (variants.h): bf16 activations in (x_bf16, written by the
// producer's epilogue), bf16 weights, fp32 accumulation on mma.sync m16n8k16.
//
// Block tile 128 x 128 x 32, 4 warps as 2 (M) x 2 (N), each warp 64 x 64 = 4 x 8 mma tiles (128 fp32
// accumulators per thread). A 4-stage cp.async pipeline: while the warps multiply stage s, the copies of
// the next three k tiles are in flight; each thread issues 4 + 4 16-byte cp.async per k tile (zero-filled
// past M, N and K). Fragments come from shared memory with ldmatrix.x4 (4 for A and 4 for B per 16-wide k
// step: 8 ldmatrix for 32 mma). Rows are padded to 40 bf16 (80 bytes), so the eight 16-byte rows an
// ldmatrix phase reads fall in eight distinct bank groups. 80 KiB of dynamic shared memory per block,
// __launch_bounds__(128, 2): two blocks per SM (ptxas: at most 255 registers). The epilogue is the
// baseline's (gemm_epilogue.cuh): bias, exact GELU, residual, fp32 and/or bf16 stores, row argmax.
#include <cuda_bf16.h>

#include <mutex>

#include "cuda/check.cuh"
#include "cuda/gemm_epilogue.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/ptx.cuh"
#include "cuda/gemm_variants.h"

namespace vtv::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 128, MIN_BLOCKS = 2, LDS = BK + 8;
constexpr int kStageElems = (BM + BN) * LDS;
constexpr size_t kSmemBytes = sizeof(__nv_bfloat16) * kStageElems * STAGES;  // 81920

__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
gemm_bf16_pipelined_kernel(const __nv_bfloat16* __restrict__ X, const __nv_bfloat16* __restrict__ W, int64_t M, int N,
                           int K, EpilogueParams ep) {
  VTV_DYNAMIC_SHARED(__nv_bfloat16, smem);  // STAGES x { A [BM][LDS], B [BN][LDS] }
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;  // warp tile origin: rows 64*wm, columns 64*wn
  const int g = lane >> 2, t = lane & 3;
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int n0 = blockIdx.x * BN;
  const int KT = (K + BK - 1) / BK;

  // A and B tiles are 128 rows x 32 k = 512 chunks of 16 bytes each; thread tid copies chunks tid + 128 i,
  // i < 4: row (tid + 128 i) / 4, k 8 * (tid % 4). The row is fixed per i, so its clamped source row
  // pointer is computed once.
  const int lrow = tid >> 2, lk = (tid & 3) * 8;
  const __nv_bfloat16* a_src[4];
  const __nv_bfloat16* b_src[4];
  bool a_ok[4], b_ok[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = m0 + lrow + 32 * i;
    const int col = n0 + lrow + 32 * i;
    a_ok[i] = row < M;
    b_ok[i] = col < N;
    a_src[i] = X + (a_ok[i] ? row : 0) * int64_t(K) + lk;
    b_src[i] = W + int64_t(b_ok[i] ? col : 0) * K + lk;
  }
  auto load_tile = [&](int kt, int stage) {
    __nv_bfloat16* As = smem + stage * kStageElems;
    __nv_bfloat16* Bs = As + BM * LDS;
    const int k0 = kt * BK;
    const bool k_ok = k0 + lk < K;  // K % 8 == 0: the whole chunk is in range
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = lrow + 32 * i;
      cp_async_16_zfill(As + r * LDS + lk, k_ok ? a_src[i] + k0 : a_src[i], a_ok[i] && k_ok ? 16 : 0);
      cp_async_16_zfill(Bs + r * LDS + lk, k_ok ? b_src[i] + k0 : b_src[i], b_ok[i] && k_ok ? 16 : 0);
    }
  };

  float acc[4][8][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // Prologue: tiles 0 .. STAGES-2 in flight, one commit group each (empty groups past KT keep the count).
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_tile(s, s);
    cp_async_commit();
  }

  // ldmatrix lane addressing. A (x4): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
  // (rows 8-15, k 8-15) of a 16 x 16 tile = a0..a3; lane l gives row (l & 15), k 8 (l >> 4).
  // B (x4, W stored [n][k]): matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
  // = b0, b1 of n tile 2j and of 2j+1; lane l gives n (l & 7) + 8 (l >> 4), k 8 ((l >> 3) & 1).
  const int a_row = wm * 64 + (lane & 15), a_k = (lane >> 4) * 8;
  const int b_row = wn * 64 + (lane & 7) + ((lane >> 4) << 3), b_k = ((lane >> 3) & 1) * 8;

  for (int kt = 0; kt < KT; ++kt) {
    // Tile kt has landed for this thread; the barrier makes every thread's copies visible and ends the
    // reads of the stage the next prefetch overwrites (read in iteration kt-1).
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = kt + STAGES - 1;
    if (next < KT) load_tile(next, next % STAGES);
    cp_async_commit();

    const __nv_bfloat16* As = smem + (kt % STAGES) * kStageElems;
    const __nv_bfloat16* Bs = As + BM * LDS;
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      uint32_t af[4][4], bfr[8][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) ldmatrix_x4(af[mt], As + (a_row + mt * 16) * LDS + ks + a_k);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t r[4];
        ldmatrix_x4(r, Bs + (b_row + j * 16) * LDS + ks + b_k);
        bfr[2 * j][0] = r[0];
        bfr[2 * j][1] = r[1];
        bfr[2 * j + 1][0] = r[2];
        bfr[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mma_bf16_16816(acc[mt][nt], af[mt], bfr[nt]);
    }
  }
  cp_async_wait<0>();

  mma_tile_epilogue(ep, acc, m0 + wm * 64, n0 + wn * 64, g, t, M, N);
}

}  // namespace

// The kernel's 80 KiB of dynamic shared memory is allowed once per device, outside any graph capture
// (prepare_kernel_variants, from MaeCuda's constructor; a first launch elsewhere prepares too).
void gemm_pipelined_prepare() {
  static std::once_flag once[kMaxVariantDevices];
  int device = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&device));
  check(device >= 0 && device < kMaxVariantDevices, "gemm pipelined: device " + std::to_string(device) + " out of range");
  std::call_once(once[device], [] {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(gemm_bf16_pipelined_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kSmemBytes)));
  });
}

void linear_bf16_pipelined(const LinearArgs& a, cudaStream_t stream) {
  validate_linear(a, "linear_bf16 (pipelined)");
  check(a.w_bf16 != nullptr, "linear_bf16 (pipelined): w_bf16 is null");
  check(a.x_bf16 != nullptr, "linear_bf16 (pipelined): needs x_bf16, the bf16 activations");
  if (a.M == 0) return;
  const int64_t mt = (a.M + BM - 1) / BM;
  check(mt <= 65535, "linear_bf16 (pipelined): M = " + std::to_string(a.M) + " needs more than 65535 row tiles");
  gemm_pipelined_prepare();
  dim3 grid(static_cast<unsigned>((a.N + BN - 1) / BN), static_cast<unsigned>(mt));
  VTV_LAUNCH("gemm_bf16_pipelined_kernel", grid, THREADS, kSmemBytes, stream, gemm_bf16_pipelined_kernel,
             reinterpret_cast<const __nv_bfloat16*>(a.x_bf16), reinterpret_cast<const __nv_bfloat16*>(a.w_bf16), a.M,
             static_cast<int>(a.N), static_cast<int>(a.K), epilogue_params(a));
}

}  // namespace vtv::cuda
