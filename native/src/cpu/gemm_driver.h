// The cache-blocked GEMM driver used by sgemm/linear (gemm.cc) and by the 1x1 and strided convolutions
// (conv.cc; stride-1 convolutions run their own loop over the same microkernel and packers). Operands are
// never read directly: callers supply an A-block provider and a B packer that writes one kc x NR panel,
// so a convolution can pack its im2col panels straight from the image.
//
// Loop nest (BLIS order), per thread on its own block of C:
//   jc over N by NC -> pc over K by KC -> pack B block (KC x NC, L3)
//     -> ic over M by MC -> pack A block (MC x KC, L2) -> jr over NR -> ir over MR -> microkernel,
// so each B micro-panel (KC x NR) is reused from L1/L2 by every row panel while A streams from L2.
// When all of M fits one A block (Linear layers up to MC rows) B micro-panels are instead packed right
// before their use, never round-tripping through L3.
// The epilogue (bias, GELU, residual) runs on each tile right after its last K block, while hot.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/thread_pool.h"
#include "cpu/gemm_microkernel.h"
#include "cpu/simd.h"

namespace vtv::cpu::gemm_detail {

// Block sizes (overridable at compile time for tuning experiments).
#ifndef VTV_GEMM_KC
#define VTV_GEMM_KC 256
#endif
#ifndef VTV_GEMM_MC_ROWS
#define VTV_GEMM_MC_ROWS 512
#endif
#ifndef VTV_GEMM_NC_PANELS
#define VTV_GEMM_NC_PANELS 64
#endif
constexpr int64_t KC = VTV_GEMM_KC;
constexpr int64_t MC = (VTV_GEMM_MC_ROWS + MR - 1) / MR * MR;
constexpr int64_t NC = NR * VTV_GEMM_NC_PANELS;

struct TileEpilogue {
  const float* bias_col = nullptr;  // [N], added to every row (Linear)
  const float* bias_row = nullptr;  // [M], added to every column (convolution, per output channel)
  bool gelu = false;
  const float* residual = nullptr;  // [M][ldr], added last; must not alias C (callers fold that into accumulate)
  int64_t ldr = 0;
  bool empty() const { return !bias_col && !bias_row && !gelu && !residual; }
};

// A per-thread, 64-byte aligned scratch buffer that only grows.
class ScratchBuffer {
 public:
  ~ScratchBuffer() { std::free(data_); }
  float* get(int64_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      size_t bytes = ((static_cast<size_t>(floats) * sizeof(float) + 63) / 64) * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) throw std::bad_alloc();
      capacity_ = floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

inline float* pack_a_buffer(int64_t floats) {
  thread_local ScratchBuffer buf;
  return buf.get(floats);
}
inline float* pack_b_buffer(int64_t floats) {
  thread_local ScratchBuffer buf;
  return buf.get(floats);
}

inline void apply_epilogue(const TileEpilogue& ep, float* C, int64_t ldc, int64_t i0, int64_t j0, int64_t mr, int64_t nr) {
  for (int64_t i = 0; i < mr; ++i) {
    float* c = C + i * ldc;
    if (ep.bias_row) {
      float b = ep.bias_row[i0 + i];
      for (int64_t j = 0; j < nr; ++j) c[j] += b;
    }
    if (ep.bias_col) {
      const float* b = ep.bias_col + j0;
      for (int64_t j = 0; j < nr; ++j) c[j] += b[j];
    }
    if (ep.gelu) simd::gelu_inplace(c, nr);
    if (ep.residual) {
      const float* r = ep.residual + (i0 + i) * ep.ldr + j0;
      for (int64_t j = 0; j < nr; ++j) c[j] += r[j];
    }
  }
}

// The B micro-panel of columns [j0, j0+nr), rows [p0, p0+kc): a packer writes it into dst (and returns
// void), a provider of pre-packed panels returns a pointer to it (kc x NR, row stride NR, zero past nr).
template <class PackB>
inline const float* b_panel(const PackB& pack_b, float* dst, int64_t j0, int64_t nr, int64_t p0, int64_t kc) {
  if constexpr (std::is_same_v<decltype(pack_b(dst, j0, nr, p0, kc)), const float*>) {
    return pack_b(dst, j0, nr, p0, kc);
  } else {
    pack_b(dst, j0, nr, p0, kc);
    return dst;
  }
}

// C[m0..m1)[n0..n1) = (accumulate ? C : 0) + A B, then the epilogue. Single-threaded. m0 is a multiple of MR.
// a_block(ic, mc, pc, kc, scratch) -> const float*: the packed A block of rows [ic, ic+mc), k [pc, pc+kc),
//   as consecutive kc x MR panels (zero rows past M); it may pack into `scratch` (MC*KC floats) or return
//   a pre-packed block.
// pack_b(dst, j0, nr, p0, kc): dst[p*NR + j] = B[p0+p][j0+j] for j < nr, 0 for nr <= j < NR; or, for
//   pre-packed B, returns a pointer to that panel instead of writing dst (see b_panel).
template <class ABlock, class PackB>
void gemm_block(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, const ABlock& a_block, const PackB& pack_b,
                float* C, int64_t ldc, bool accumulate, const TileEpilogue& ep) {
  if (m1 <= m0 || n1 <= n0) return;
  if (K == 0) {
    for (int64_t i = m0; i < m1; ++i) {
      if (!accumulate) std::fill(C + i * ldc + n0, C + i * ldc + n1, 0.0f);
    }
    apply_epilogue(ep, C + m0 * ldc + n0, ldc, m0, n0, m1 - m0, n1 - n0);
    return;
  }
  // Row blocks of at most MC, balanced, in whole panels.
  const int64_t m_blocks = (m1 - m0 + MC - 1) / MC;
  const int64_t mc_max = ((m1 - m0 + m_blocks - 1) / m_blocks + MR - 1) / MR * MR;
  float* Abuf = pack_a_buffer(MC * KC);
  auto run_panel = [&](const float* Ablk, int64_t ic, int64_t mc, const float* Bp, int64_t j, int64_t kc, bool acc,
                       bool last_k) {
    const int nr = static_cast<int>(std::min<int64_t>(NR, n1 - j));
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
      float* Ct = C + (ic + ir) * ldc + j;
      microkernel(kc, Ablk + (ir / MR) * kc * MR, Bp, Ct, ldc, mr, nr, acc);
      if (last_k && !ep.empty()) apply_epilogue(ep, Ct, ldc, ic + ir, j, mr, nr);
    }
  };
  if (m_blocks == 1) {
    // All rows in one A block (L2): pack each B micro-panel just before its use, so it goes straight to
    // L1 and serves every row panel there; no B block ever round-trips through L3.
    float* Bp = pack_b_buffer(KC * NR);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float* Ablk = a_block(m0, m1 - m0, pc, kc, Abuf);
      for (int64_t j = n0; j < n1; j += NR) {
        const float* B = b_panel(pack_b, Bp, j, std::min<int64_t>(NR, n1 - j), pc, kc);
        run_panel(Ablk, m0, m1 - m0, B, j, kc, accumulate || pc > 0, pc + kc == K);
      }
    }
    return;
  }
  // Several row blocks: pack a B block (KC x NC) once and reuse it for every row block.
  float* Bbuf = pack_b_buffer(KC * NC);
  const float* panels[NC / NR];
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      for (int64_t jr = 0; jr < nc; jr += NR)
        panels[jr / NR] = b_panel(pack_b, Bbuf + (jr / NR) * kc * NR, jc + jr, std::min<int64_t>(NR, nc - jr), pc, kc);
      for (int64_t ic = m0; ic < m1; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m1 - ic);
        const float* Ablk = a_block(ic, mc, pc, kc, Abuf);
        for (int64_t jr = 0; jr < nc; jr += NR)
          run_panel(Ablk, ic, mc, panels[jr / NR], jc + jr, kc, accumulate || pc > 0, pc + kc == K);
      }
    }
  }
}

// Splits C among the pool's threads (along N in whole NR panels, or along M in whole MR panels, whichever
// balances better) and runs gemm_block on each part. Small products run on the calling thread.
template <class ABlock, class PackB>
void gemm_parallel(ThreadPool& pool, int64_t M, int64_t N, int64_t K, const ABlock& a_block, const PackB& pack_b,
                   float* C, int64_t ldc, bool accumulate, const TileEpilogue& ep) {
  if (M <= 0 || N <= 0) return;
  const int64_t threads = pool.size();
  const double flops = 2.0 * M * N * std::max<int64_t>(K, 1);
  const int64_t n_panels = (N + NR - 1) / NR, m_panels = (M + MR - 1) / MR;
  if (threads <= 1 || flops < 2.0e6 || (n_panels < 2 && m_panels < 2)) {
    gemm_block(0, M, 0, N, K, a_block, pack_b, C, ldc, accumulate, ep);
    return;
  }
  auto efficiency = [&](int64_t panels) {
    int64_t parts = std::min(threads, panels);
    int64_t per = (panels + parts - 1) / parts;
    return static_cast<double>(panels) / static_cast<double>(per * threads);
  };
  const bool split_n = efficiency(n_panels) >= efficiency(m_panels);
  const int64_t panels = split_n ? n_panels : m_panels;
  const int64_t parts = std::min(threads, panels);
  pool.parallel_for(parts, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t p0 = panels * t / parts, p1 = panels * (t + 1) / parts;
      if (split_n) {
        gemm_block(0, M, p0 * NR, std::min(N, p1 * NR), K, a_block, pack_b, C, ldc, accumulate, ep);
      } else {
        gemm_block(p0 * MR, std::min(M, p1 * MR), 0, N, K, a_block, pack_b, C, ldc, accumulate, ep);
      }
    }
  });
}

#if defined(__AVX2__) || defined(__AVX512F__)
// dst[c][r] = src[r][c] for an 8 x 8 block.
inline void transpose8x8(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld_src), r2 = _mm256_loadu_ps(src + 2 * ld_src),
         r3 = _mm256_loadu_ps(src + 3 * ld_src), r4 = _mm256_loadu_ps(src + 4 * ld_src),
         r5 = _mm256_loadu_ps(src + 5 * ld_src), r6 = _mm256_loadu_ps(src + 6 * ld_src),
         r7 = _mm256_loadu_ps(src + 7 * ld_src);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ld_dst, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ld_dst, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ld_dst, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ld_dst, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ld_dst, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ld_dst, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ld_dst, _mm256_permute2f128_ps(u3, u7, 0x31));
}
constexpr bool kHaveTranspose8x8 = true;
#else
inline void transpose8x8(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
}
constexpr bool kHaveTranspose8x8 = false;
#endif

// Packers for plain strided matrices.
// A row-major [M][K] (lda): a panel is the transpose of MR rows, done in 8 x 8 blocks where they fit.
inline void pack_a_rowmajor(float* dst, const float* A, int64_t lda, int64_t i0, int64_t mr, int64_t p0, int64_t kc) {
  int64_t p = 0;
  if (kHaveTranspose8x8 && MR % 8 == 0 && mr == MR) {
    for (; p + 8 <= kc; p += 8)
      for (int64_t g = 0; g < MR; g += 8) transpose8x8(A + (i0 + g) * lda + p0 + p, lda, dst + p * MR + g, MR);
  }
  for (int64_t i = 0; i < mr; ++i) {
    const float* a = A + (i0 + i) * lda + p0;
    for (int64_t q = p; q < kc; ++q) dst[q * MR + i] = a[q];
  }
  for (int64_t i = mr; i < MR; ++i)
    for (int64_t q = p; q < kc; ++q) dst[q * MR + i] = 0.0f;
}
// A stored [K][M] (lda): each k row holds MR contiguous values.
inline void pack_a_colmajor(float* dst, const float* A, int64_t lda, int64_t i0, int64_t mr, int64_t p0, int64_t kc) {
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = A + (p0 + p) * lda + i0;
    float* d = dst + p * MR;
    int64_t i = 0;
    for (; i < mr; ++i) d[i] = a[i];
    for (; i < MR; ++i) d[i] = 0.0f;
  }
}
// B row-major [K][N] (ldb): each k row holds NR contiguous values.
inline void pack_b_rowmajor(float* dst, const float* B, int64_t ldb, int64_t j0, int64_t nr, int64_t p0, int64_t kc) {
  for (int64_t p = 0; p < kc; ++p) {
    const float* b = B + (p0 + p) * ldb + j0;
    float* d = dst + p * NR;
    if (nr == NR) {
      std::memcpy(d, b, sizeof(float) * NR);
    } else {
      int64_t j = 0;
      for (; j < nr; ++j) d[j] = b[j];
      for (; j < NR; ++j) d[j] = 0.0f;
    }
  }
}
// B stored [N][K] (ldb), e.g. a Linear weight: a panel is the transpose of NR rows, in 8 x 8 blocks.
inline void pack_b_colmajor(float* dst, const float* B, int64_t ldb, int64_t j0, int64_t nr, int64_t p0, int64_t kc) {
  int64_t p = 0;
  if (kHaveTranspose8x8 && NR % 8 == 0 && nr == NR) {
    for (; p + 8 <= kc; p += 8)
      for (int64_t g = 0; g < NR; g += 8) transpose8x8(B + (j0 + g) * ldb + p0 + p, ldb, dst + p * NR + g, NR);
  }
  for (int64_t j = 0; j < nr; ++j) {
    const float* b = B + (j0 + j) * ldb + p0;
    for (int64_t q = p; q < kc; ++q) dst[q * NR + j] = b[q];
  }
  for (int64_t j = nr; j < NR; ++j)
    for (int64_t q = p; q < kc; ++q) dst[q * NR + j] = 0.0f;
}

// An a_block for gemm_block that packs with `pack_panel(dst, i0, mr, p0, kc)` into the scratch buffer.
template <class PackPanel>
struct PackingABlock {
  int64_t M;
  PackPanel pack_panel;
  const float* operator()(int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* scratch) const {
    for (int64_t ir = 0; ir < mc; ir += MR)
      pack_panel(scratch + (ir / MR) * kc * MR, ic + ir, std::min<int64_t>(MR, M - ic - ir), pc, kc);
    return scratch;
  }
};
template <class PackPanel>
PackingABlock<PackPanel> packing_a_block(int64_t M, PackPanel pack_panel) {
  return {M, pack_panel};
}

// A packed once for the whole product (e.g. convolution weights shared by many bands): for every K block
// pc, the row panels of kc x MR follow each other, so the block (ic, pc) starts at pc*Mpad + ic*kc.
struct PrepackedA {
  const float* data;
  int64_t Mpad;
  const float* operator()(int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* scratch) const {
    return data + pc * Mpad + ic * kc;
  }
};

}  // namespace vtv::cpu::gemm_detail
