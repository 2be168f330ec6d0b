// The multiply step of the fp32 tiled convolution (conv_f32.cu; gemm_f32.cu spells the same step out, see
// k_loop.cuh): tiles stored k-major (As[k][row], Bs[k][col]) so that a thread reads its 4 rows and 4
// columns of one k as two float4s; thread (ty, tx) owns rows 4*ty.. and columns 4*tx.. of the block
// tile. Plain FMA (the parity path).
#pragma once

namespace vtv::cuda {

// acc[i][j] += sum over the BK k of As[k][4*ty + i] * Bs[k][4*tx + j], k in order.
template <int BK, int LDA, int LDB>
__device__ __forceinline__ void fma_tile_4x4(float (&acc)[4][4], const float (&As)[BK][LDA], const float (&Bs)[BK][LDB],
                                             int ty, int tx) {
#pragma unroll
  for (int k = 0; k < BK; ++k) {
    const float4 a = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
    const float4 b = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
    const float av[4] = {a.x, a.y, a.z, a.w};
    const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

}  // namespace vtv::cuda
