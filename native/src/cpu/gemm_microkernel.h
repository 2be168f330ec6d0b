// The register-blocked GEMM microkernel: C[MR][NR] (+)= Ap[kc][MR]^T-broadcast x Bp[kc][NR], where Ap and
// Bp are packed panels (k-major, zero-padded to MR/NR). Row-major C, so each k step loads NR/lanes
// vectors of B and broadcasts MR scalars of A into MR x NR/lanes accumulator registers.
//   AVX-512: MR 8  x NR 48 (24 zmm accumulators + 3 B vectors of 32 registers).
//   AVX2:    MR 6  x NR 16 (12 ymm accumulators + 2 B vectors of 16 registers).
//   scalar:  MR 4  x NR 16 (the compiler vectorises what it can).
// Partial tiles (mr < MR rows or nr < NR columns valid) go through a small stack tile.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12 reports false "may be used uninitialized" warnings inside its own AVX-512 intrinsics
// (_mm512_undefined_ps); silence them for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace vtv::cpu::gemm_detail {

#if defined(__AVX512F__)
// 8 x 48: 24 zmm accumulators, 3 B vectors and a broadcast register; per k step 3 loads and 8
// broadcasts feed 24 FMAs. Measured slightly ahead of 12x32 and 6x64 on Ice Lake, and MR = 8 divides the
// VQGAN channel counts (128, 256, 512) exactly.
constexpr int MR = 8, NR = 48;
constexpr const char* kKernelName = "blocked-avx512-8x48";

// One register-blocked tile: the first ROWS of the MR rows and the first 16 * NV of the NR columns (Ap
// and Bp keep their strides of MR and NR per k). The full 8 x 48 tile is the common case; a tile with
// fewer valid rows (the last row panel of a 50- or 99-token Linear) or columns (a Winograd block's last
// few tiles) costs only its share of a full one. PREFETCH_C starts fetching the C tile before the k
// loop: it is touched only after it, and in a large C it is not cached.
template <int ROWS, int NV, bool PREFETCH_C>
inline void microkernel_tile(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  __m512 c[ROWS][NV];
  if constexpr (PREFETCH_C) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 16 * NV - 1), _MM_HINT_T0);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      __m512 a = _mm512_set1_ps(Ap[i]);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(a, b[v], c[i][v]);
    }
    Ap += MR;
    Bp += NR;
  }
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      float* cp = C + i * ldc + 16 * v;
      _mm512_storeu_ps(cp, accumulate ? _mm512_add_ps(c[i][v], _mm512_loadu_ps(cp)) : c[i][v]);
    }
}

template <int ROWS>
inline void microkernel_rows(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  microkernel_tile<ROWS, NR / 16, false>(kc, Ap, Bp, C, ldc, accumulate);
}

template <int NV>
inline void microkernel_cols(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  microkernel_tile<MR, NV, false>(kc, Ap, Bp, C, ldc, accumulate);
}

inline void microkernel_full(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  microkernel_tile<MR, NR / 16, true>(kc, Ap, Bp, C, ldc, accumulate);
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int MR = 6, NR = 16;
constexpr const char* kKernelName = "blocked-avx2-6x16";

inline void microkernel_full(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      __m256 a = _mm256_broadcast_ss(Ap + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += MR;
    Bp += NR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (accumulate) {
      c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(C + i * ldc));
      c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(C + i * ldc + 8));
    }
    _mm256_storeu_ps(C + i * ldc, c[i][0]);
    _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
  }
}
#else
constexpr int MR = 4, NR = 16;
constexpr const char* kKernelName = "blocked-scalar-4x16";

inline void microkernel_full(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                             bool accumulate) {
  float c[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) c[i][j] += Ap[i] * Bp[j];
    Ap += MR;
    Bp += NR;
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + c[i][j] : c[i][j];
}
#endif

// All MR rows and at least the first `cols` columns of the tile, written in place (columns past `cols`
// up to the next multiple of 16 may be written too: C must have room for a full tile's columns).
inline void microkernel_leading_cols(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int64_t cols,
                                     bool accumulate) {
#if defined(__AVX512F__)
  static_assert(NR == 48, "the AVX-512 column kernels assume NR = 48");
  if (cols <= 16) return microkernel_cols<1>(kc, Ap, Bp, C, ldc, accumulate);
  if (cols <= 32) return microkernel_cols<2>(kc, Ap, Bp, C, ldc, accumulate);
#endif
  (void)cols;
  microkernel_full(kc, Ap, Bp, C, ldc, accumulate);
}

// Any tile: mr x nr valid (mr <= MR, nr <= NR).
inline void microkernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr, int nr,
                        bool accumulate) {
  if (mr == MR && nr == NR) {
    microkernel_full(kc, Ap, Bp, C, ldc, accumulate);
    return;
  }
#if defined(__AVX512F__)
  if (nr == NR) {
    // Fewer rows (the last row panel of a Linear over a few dozen tokens): only those rows' work.
    switch (mr) {
      case 1: microkernel_rows<1>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 2: microkernel_rows<2>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 3: microkernel_rows<3>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 4: microkernel_rows<4>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 5: microkernel_rows<5>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 6: microkernel_rows<6>(kc, Ap, Bp, C, ldc, accumulate); return;
      case 7: microkernel_rows<7>(kc, Ap, Bp, C, ldc, accumulate); return;
      default: break;
    }
  }
#endif
  alignas(64) float tile[MR * NR];
  microkernel_full(kc, Ap, Bp, tile, NR, false);
  for (int i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    const float* t = tile + i * NR;
    if (accumulate) {
      for (int j = 0; j < nr; ++j) c[j] += t[j];
    } else {
      std::memcpy(c, t, sizeof(float) * nr);
    }
  }
}

}  // namespace vtv::cpu::gemm_detail
