// The tensor-core pieces of the bf16 tiled kernels (gemm_bf16.cu, conv_bf16.cu): mma.sync m16n8k16 (bf16
// in, fp32 accumulation, sm_80 and newer), the bf16 packing used when staging fp32 values, and the
// multiply step of one warp's 64 x 32 tile (4 x 4 mma tiles; 8 warps as 2 x 4 cover a 128 x 128 block
// tile). Fragments are read with 32-bit shared loads straight from the PTX ISA fragment tables (no
// ldmatrix); both tiles are stored k-contiguous per row ([row][k] for A, [col][k] for B, i.e. B "col").
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

namespace vtv::cuda {

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef VTV_CUDA_EMULATOR
  ::vtv_emu::mma_m16n8k16_bf16(d, a, b);  // the same instruction, executed by the CPU emulator's warp
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t lds32(const __nv_bfloat16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half, lower address) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}

// acc[mt][nt] += the products over the BK k of one shared buffer for warp tile (wm, wn): rows
// 64*wm + 16*mt.., columns 32*wn + 8*nt..; (g, t) = (lane / 4, lane % 4), the fragment coordinates.
// The C fragment is left as mma.sync leaves it: acc[mt][nt][0, 1] at (g, 2t), (g, 2t+1) and [2, 3] at
// (g+8, 2t), (g+8, 2t+1) of the 16 x 8 tile.
template <int BK, int ROWS_A, int ROWS_B, int LD>
__device__ __forceinline__ void mma_warp_tile_64x32(float (&acc)[4][4][4], const __nv_bfloat16 (&As)[ROWS_A][LD],
                                                    const __nv_bfloat16 (&Bs)[ROWS_B][LD], int wm, int wn, int g,
                                                    int t) {
#pragma unroll
  for (int ks = 0; ks < BK; ks += 16) {
    // A fragment (16x16, row-major): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..).
    uint32_t af[4][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      const int r = wm * 64 + mt * 16 + g;
      af[mt][0] = lds32(&As[r][ks + 2 * t]);
      af[mt][1] = lds32(&As[r + 8][ks + 2 * t]);
      af[mt][2] = lds32(&As[r][ks + 2 * t + 8]);
      af[mt][3] = lds32(&As[r + 8][ks + 2 * t + 8]);
    }
    // B fragment (16x8, "col" = k contiguous per column): b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g).
    uint32_t bfr[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int c = wn * 32 + nt * 8 + g;
      bfr[nt][0] = lds32(&Bs[c][ks + 2 * t]);
      bfr[nt][1] = lds32(&Bs[c][ks + 2 * t + 8]);
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) mma_bf16_16816(acc[mt][nt], af[mt], bfr[nt]);
  }
}

}  // namespace vtv::cuda
