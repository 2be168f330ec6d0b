// The K loop of the tiled kernels (gemm_bf16.cu, conv_f32.cu, conv_bf16.cu), which differ only in how a
// k tile is fetched, staged and multiplied: register-staged double buffering, so the next k tile is
// loaded into registers while the current one is multiplied from shared memory, then stored to the other
// shared buffer. gemm_f32.cu spells the same loop out: through these helpers ptxas allocates it 48
// registers instead of 51 on sm_90 (same PTX but for register names), which would change its occupancy
// unmeasured.
#pragma once

namespace vtv::cuda {

// load(k0): the k tile starting at k0 from global memory into registers; store(buf): the registers into
// shared buffer buf (0 or 1); multiply(buf): accumulate the products of shared buffer buf.
// Every thread of the block must call it (it holds __syncthreads).
template <int BK, class Load, class Store, class Multiply>
__device__ __forceinline__ void double_buffered_k_loop(int K, Load&& load, Store&& store, Multiply&& multiply) {
  const int KT = (K + BK - 1) / BK;
  load(0);
  store(0);
  __syncthreads();
  for (int kt = 0; kt < KT; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < KT) load((kt + 1) * BK);
    multiply(cur);
    // The other buffer was last read in iteration kt-1, which ended with the barrier below.
    if (kt + 1 < KT) store(cur ^ 1);
    __syncthreads();
  }
}

}  // namespace vtv::cuda
