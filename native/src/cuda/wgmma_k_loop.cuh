// The main loop of the sm_90a wgmma kernels (gemm_bf16_wgmma.cu, conv_bf16_wgmma.cu), which differ only
// in how a k tile is fetched: a ring of STAGES shared-memory stages, each { A tile of 128 rows, B tile
// of BN rows } of BK = 32 bf16, K-major in 8 x 16-byte core matrices without swizzle (chunk (row r, k
// 8c .. 8c+7) at byte ((r / 8) * 4 + c) * 128 + (r % 8) * 16), with loads overlapping the MMAs.
//
// In iteration kt the block waits for tile kt's copies, each warpgroup issues its 2 wgmmas (k 0..15,
// 16..31) and commits them, and `wgmma.wait_group 1` retires tile kt-1's while tile kt's keep running.
// A stage is refilled only after every warpgroup has retired the MMAs that read it: the refill at
// iteration kt writes the stage of tile kt-2, which each warpgroup retired in iteration kt-1, before the
// barrier that opens iteration kt. So the copies run STAGES-2 tiles ahead and the tensor cores always
// have the current tile's MMAs queued while the threads issue the next copies. Copies land through the
// generic proxy and wgmma reads through the async proxy, hence the proxy fence after each wait. (The CPU
// CUDA emulator reports a copy into a stage that an unretired wgmma reads as a race, so a shorter refill
// distance fails the parity tests.)
#pragma once

#include "cuda/ptx.cuh"

namespace vtv::cuda {

#if VTV_HAVE_WGMMA
// load_tile(kt, stage): issue this thread's cp.async copies of k tile kt into ring stage `stage` (no
// commit). wg: the calling thread's warpgroup, which computes rows 64 wg .. 64 wg + 63 of the A tile
// against all BN rows of the B tile into acc (wgmma m64nBNk16's fragment). Every thread of the block
// calls it (it holds barriers); on return every copy has landed and every MMA has retired.
template <int STAGES, int BN, int kStageBytes, int kATileBytes, class LoadTile>
__device__ __forceinline__ void wgmma_pipelined_k_loop(int KT, const unsigned char* smem, int wg, float (&acc)[BN / 2],
                                                       LoadTile&& load_tile) {
  constexpr int BK = 32;  // the descriptors' byte offsets below: 2 core matrices per k16, 4 per row group
  static_assert(STAGES >= 3, "the refill distance needs at least 3 stages");
  // Tiles 0 .. STAGES-3 in flight before the loop; iteration kt adds tile kt + STAGES - 2.
#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if (s < KT) load_tile(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 3>();  // this thread's copies of tile kt have landed
    fence_proxy_async_shared();
    // Every thread's copies of tile kt are visible to wgmma, and every warpgroup has passed iteration
    // kt-1's wait_group 1, so the MMAs of tile kt-2 have retired and its stage may be refilled.
    __syncthreads();
    const int next = kt + STAGES - 2;
    if (next < KT) load_tile(next, next % STAGES);
    cp_async_commit();

    const unsigned char* As = smem + (kt % STAGES) * kStageBytes;
    const unsigned char* Bs = As + kATileBytes;
    wgmma_fence();
    wgmma_fence_operand(acc);
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      // This warpgroup's 64 rows start at row group 8 wg; the k16 slice at core-matrix column ks / 8.
      const uint64_t da = wgmma_desc(As + (wg * 8 * 4 + ks / 8) * 128, 128, 512, WgmmaSwizzle::None);
      const uint64_t db = wgmma_desc(Bs + (ks / 8) * 128, 128, 512, WgmmaSwizzle::None);
      wgmma_m64k16_bf16_ss<BN>(acc, da, db, 1);
    }
    wgmma_commit();
    wgmma_wait<1>();  // tile kt-1's MMAs have retired (their stage is free after the next barrier)
    wgmma_fence_operand(acc);
  }
  wgmma_wait<0>();
  wgmma_fence_operand(acc);
  cp_async_wait<0>();
}
#endif

}  // namespace vtv::cuda
