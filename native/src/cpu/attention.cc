// Multi-head attention with in-place head patching, and the VQGAN's spatial attention.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/gemm_driver.h"
#include "cpu/simd.h"
#include "vtv/error.h"

namespace vtv::cpu {

namespace {

bool head_patched(const HeadPatch& patch, int64_t b, int64_t bit) {
  const int64_t i = patch.bit_offset + bit;
  return (patch.mask[b * patch.mask_stride + (i >> 3)] >> (i & 7)) & 1;
}

}  // namespace

void mha_attention(ThreadPool& pool, const float* qkv, int64_t B, int64_t N, int H, int dh, float scale, float* out,
                   const HeadPatch* patch, float* capture) {
  check(B >= 0 && N > 0 && H > 0 && dh > 0, "mha_attention: sizes must be positive");
  check(!patch || (patch->mask && patch->means), "mha_attention: a patch needs both mask and means");
  check(scale > 0.0f, "mha_attention: scale must be positive");
  using namespace gemm_detail;
  const int64_t C = int64_t(H) * dh, row = 3 * C;
  // Score rows padded to whole vectors; the padding holds -inf, so exp() makes it 0 and the softmax
  // needs no scalar tail.
  const int64_t ldS = (N + simd::kLanes - 1) / simd::kLanes * simd::kLanes;
  const TileEpilogue none;
  // One (sample, head) per task, as two small GEMMs on the microkernel, straight from the strided qkv:
  // S = Q K^T (N x N x dh), softmax over each row, O = P V (N x dh x N) written into out's head columns.
  // Patched query rows are left out of the products (their attention is never computed): the remaining
  // queries are gathered into a compact Q and their outputs scattered back.
  pool.parallel_for(B * H, [&](int64_t begin, int64_t end) {
    std::vector<float> S(size_t(N) * ldS), qc, oc;
    std::vector<int64_t> rows;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / H, h = t % H;
      const float* q = qkv + b * N * row + h * dh;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* o = out + b * N * C + h * dh;
      rows.clear();
      for (int64_t i = 0; i < N; ++i) {
        if (patch && head_patched(*patch, b, h * N + i)) {
          const int64_t src = i == 0 ? 0 : i + patch->position_shift;
          std::memcpy(o + i * C, patch->means + (src * H + h) * dh, sizeof(float) * dh);
        } else {
          rows.push_back(i);
        }
      }
      const int64_t M = static_cast<int64_t>(rows.size());
      if (M == 0) continue;
      const bool compact = M < N;
      const float* qa = q;
      int64_t lda = row;
      if (compact) {
        qc.resize(size_t(M) * dh);
        for (int64_t r = 0; r < M; ++r) std::memcpy(&qc[r * dh], q + rows[r] * row, sizeof(float) * dh);
        qa = qc.data();
        lda = dh;
      }
      auto pa_q = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) {
        pack_a_rowmajor(d, qa, lda, i0, mr, p0, kc);
      });
      auto pb_k = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_colmajor(d, k, row, j0, nr, p0, kc); };
      gemm_block(0, M, 0, N, dh, pa_q, pb_k, S.data(), ldS, false, none);
      for (int64_t i = 0; i < M; ++i) {
        float* si = S.data() + i * ldS;
        for (int64_t j = N; j < ldS; ++j) si[j] = -INFINITY;
        const float mx = simd::max_of(si, ldS) * scale;
        const float inv = 1.0f / simd::exp_scaled_sum(si, ldS, scale, mx);
        simd::scale_inplace(si, N, inv);
      }
      auto pa_p = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) {
        pack_a_rowmajor(d, S.data(), ldS, i0, mr, p0, kc);
      });
      auto pb_v = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_rowmajor(d, v, row, j0, nr, p0, kc); };
      if (compact) {
        oc.resize(size_t(M) * dh);
        gemm_block(0, M, 0, dh, N, pa_p, pb_v, oc.data(), dh, false, none);
        for (int64_t r = 0; r < M; ++r) std::memcpy(o + rows[r] * C, &oc[r * dh], sizeof(float) * dh);
      } else {
        gemm_block(0, M, 0, dh, N, pa_p, pb_v, o, C, false, none);
      }
    }
  });
  if (capture) {
    pool.parallel_for(N, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* c = capture + i * C;
        for (int64_t b = 0; b < B; ++b) {
          const float* ob = out + (b * N + i) * C;
          for (int64_t j = 0; j < C; ++j) c[j] += ob[j];
        }
      }
    });
  }
}

void spatial_attention(ThreadPool& pool, const float* q, const float* k, const float* v, int64_t B, int64_t C,
                       int64_t HW, float* out) {
  check(B >= 0 && C > 0 && HW > 0, "spatial_attention: sizes must be positive");
  const float scale = 1.0f / std::sqrt(static_cast<float>(C));
  // Queries in blocks so the score matrix stays bounded for large HW.
  const int64_t block = std::min<int64_t>(HW, 512);
  std::vector<float> s(size_t(block) * HW);
  for (int64_t b = 0; b < B; ++b) {
    const float* qb = q + b * C * HW;
    const float* kb = k + b * C * HW;
    const float* vb = v + b * C * HW;
    float* ob = out + b * C * HW;
    for (int64_t i0 = 0; i0 < HW; i0 += block) {
      const int64_t m = std::min(block, HW - i0);
      // S[i][j] = q[:, i0+i] . k[:, j]: q is stored [C][HW], i.e. op(A) = q^T.
      sgemm(pool, true, false, m, HW, C, qb + i0, HW, kb, HW, 0.0f, s.data(), HW);
      pool.parallel_for(m, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          float* si = s.data() + i * HW;
          const float mx = simd::max_of(si, HW) * scale;
          const float inv = 1.0f / simd::exp_scaled_sum(si, HW, scale, mx);
          simd::scale_inplace(si, HW, inv);
        }
      }, 8);
      // out[c][i0+i] = sum_j v[c][j] P[i][j]: out = v P^T.
      sgemm(pool, false, true, C, m, HW, vb, HW, s.data(), HW, 0.0f, ob + i0, HW);
    }
  }
}

}  // namespace vtv::cpu
