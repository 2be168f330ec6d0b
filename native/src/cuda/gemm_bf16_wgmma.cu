// The "wgmma" variant of the bf16 Linear (variants.h): the pipelined variant's cp.async loads with the
// multiply on sm_90a's warpgroup MMA (wgmma.mma_async m64n128k16, both operands from shared memory).
//
// Block tile 128 x 128 x 32, 256 threads = 2 warpgroups, warpgroup wg computing rows 64 wg .. + 63 and
// all 128 columns (64 fp32 accumulators per thread). A 6-stage cp.async ring (2 + 2 16-byte copies per
// thread and k tile, 96 KiB of dynamic shared memory; __launch_bounds__(256, 2)). Tiles are stored
// K-major in 8 x 16-byte core matrices without swizzle: the chunk (row r, k 8c .. 8c+7) at byte
// ((r / 8) * 4 + c) * 128 + (r % 8) * 16, so a k16 slice is 2 core matrices 128 bytes apart in K (the
// descriptor's leading byte offset) and row groups are 512 bytes apart (its stride byte offset); the
// threads' copies are handed out so that they land in consecutive 16-byte slots.
// The main loop is wgmma_k_loop.cuh's (shared with conv_bf16_wgmma.cu): per k tile each warpgroup issues
// 2 wgmma and `wgmma.wait_group 1` retires the previous tile's while these run, the copies 4 tiles ahead.
// The epilogue is the other variants' (gemm_epilogue.cuh).
//
// The wgmma instructions exist only in sm_90a code: this file is compiled for sm_90a as well
// (CMakeLists.txt), elsewhere the kernel body traps, and the variant is available only when this file's
// probe (wgmma_probe.cuh), run once per device, reports that the code the device runs has them.
#include <cuda_bf16.h>

#include "cuda/check.cuh"
#include "cuda/gemm_epilogue.cuh"
#include "cuda/gemm_variants.h"
#include "cuda/launch.cuh"
#include "cuda/ptx.cuh"
#include "cuda/wgmma_k_loop.cuh"
#include "cuda/wgmma_probe.cuh"

namespace vtv::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 6, THREADS = 256;
constexpr int kTileBytes = BM * BK * 2;            // 8 KiB per operand and stage
constexpr int kStageBytes = 2 * kTileBytes;        // A then B
constexpr size_t kSmemBytes = size_t(kStageBytes) * STAGES;  // 98304
static_assert(STAGES >= 3, "a stage is refilled two tiles after its MMAs were issued");

__global__ void __launch_bounds__(THREADS, 2)
gemm_bf16_wgmma_kernel(const __nv_bfloat16* __restrict__ X, const __nv_bfloat16* __restrict__ W, int64_t M, int N,
                       int K, EpilogueParams ep) {
#if VTV_HAVE_WGMMA
  VTV_DYNAMIC_SHARED(unsigned char, smem);  // STAGES x { A tile, B tile }
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, w = warp & 3;  // warpgroup, warp within it
  const int g = lane >> 2, t = lane & 3;
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int n0 = blockIdx.x * BN;
  const int KT = (K + BK - 1) / BK;

  // Chunk i < 2 of this thread, for A and for B: chunk q = tid + 256 i of the tile, which the core-matrix
  // layout puts at byte 16 q when its row is (q / 32) * 8 + q % 8 and its k chunk (q / 8) % 4. So 8
  // consecutive threads fill 128 contiguous bytes (no shared-memory bank conflicts), and a warp still
  // reads 8 whole 64-byte rows (as conv_bf16_wgmma.cu hands out its chunks).
  const int lrow = (tid >> 5) * 8 + (tid & 7), lc = (tid >> 3) & 3;
  const __nv_bfloat16* a_src[2];
  const __nv_bfloat16* b_src[2];
  bool a_ok[2], b_ok[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t row = m0 + lrow + 64 * i;
    const int col = n0 + lrow + 64 * i;
    a_ok[i] = row < M;
    b_ok[i] = col < N;
    a_src[i] = X + (a_ok[i] ? row : 0) * int64_t(K) + lc * 8;
    b_src[i] = W + int64_t(b_ok[i] ? col : 0) * K + lc * 8;
  }
  auto load_tile = [&](int kt, int stage) {
    unsigned char* As = smem + stage * kStageBytes;
    unsigned char* Bs = As + kTileBytes;
    const int k0 = kt * BK;
    const bool k_ok = k0 + lc * 8 < K;  // K % 8 == 0: the whole chunk is in range
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int off = 16 * (tid + THREADS * i);
      cp_async_16_zfill(As + off, k_ok ? a_src[i] + k0 : a_src[i], a_ok[i] && k_ok ? 16 : 0);
      cp_async_16_zfill(Bs + off, k_ok ? b_src[i] + k0 : b_src[i], b_ok[i] && k_ok ? 16 : 0);
    }
  };

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

  wgmma_pipelined_k_loop<STAGES, BN, kStageBytes, kTileBytes>(KT, smem, wg, acc, load_tile);

  // Thread (w, g, t): acc[4j + 0, 1] = D[16w + g][8j + 2t, +1], acc[4j + 2, 3] = D[16w + g + 8][...]: the
  // mma.sync m16n8 C layout of a 16 x BN tile at row 16 w, so the mma.sync GEMMs' epilogue serves as is.
  mma_tile_epilogue<1, BN / 8>(ep, reinterpret_cast<const float(&)[1][BN / 8][4]>(acc), m0 + wg * 64 + w * 16, n0, g,
                               t, M, N);
#else
  __trap();  // not sm_90a code: never launched (wgmma_available)
#endif
}

WgmmaDevice g_devices[kMaxVariantDevices];

}  // namespace

void gemm_wgmma_prepare() {
  wgmma_probe_once(g_devices, "gemm wgmma", [] {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(gemm_bf16_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kSmemBytes)));
  });
}

std::string gemm_wgmma_unavailable() { return wgmma_unavailable(g_devices); }

void linear_bf16_wgmma(const LinearArgs& a, cudaStream_t stream) {
  validate_linear(a, "linear_bf16 (wgmma)");
  check(a.w_bf16 != nullptr && a.x_bf16 != nullptr, "linear_bf16 (wgmma): needs w_bf16 and x_bf16");
  check(gemm_wgmma_unavailable().empty(), "linear_bf16 (wgmma): " + gemm_wgmma_unavailable());
  if (a.M == 0) return;
  const int64_t mt = (a.M + BM - 1) / BM;
  check(mt <= 65535, "linear_bf16 (wgmma): M = " + std::to_string(a.M) + " needs more than 65535 row tiles");
  dim3 grid(static_cast<unsigned>((a.N + BN - 1) / BN), static_cast<unsigned>(mt));
  VTV_LAUNCH("gemm_bf16_wgmma_kernel", grid, THREADS, kSmemBytes, stream, gemm_bf16_wgmma_kernel,
             reinterpret_cast<const __nv_bfloat16*>(a.x_bf16), reinterpret_cast<const __nv_bfloat16*>(a.w_bf16), a.M,
             static_cast<int>(a.N), static_cast<int>(a.K), epilogue_params(a));
}

}  // namespace vtv::cuda
