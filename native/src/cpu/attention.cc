// Multi-head attention with in-place head patching, and the VQGAN's spatial attention.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/gemm.h"
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
  const int64_t C = int64_t(H) * dh, row = 3 * C;
  // One (sample, head) per task. K is transposed to [dh][N] so that a query's scores are dh vector
  // AXPYs along the keys (no horizontal sums); V stays [N][dh] for the weighted sum.
  pool.parallel_for(B * H, [&](int64_t begin, int64_t end) {
    std::vector<float> kt(size_t(dh) * N), v(size_t(N) * dh), scores(N), q(dh);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / H, h = t % H;
      const float* base = qkv + b * N * row;
      bool any_computed = true;
      if (patch) {
        any_computed = false;
        for (int64_t p = 0; p < N && !any_computed; ++p) any_computed = !head_patched(*patch, b, h * N + p);
      }
      if (any_computed) {
        for (int64_t j = 0; j < N; ++j) {
          const float* kj = base + j * row + C + h * dh;
          for (int d = 0; d < dh; ++d) kt[d * N + j] = kj[d];
          std::memcpy(&v[j * dh], base + j * row + 2 * C + h * dh, sizeof(float) * dh);
        }
      }
      for (int64_t i = 0; i < N; ++i) {
        float* o = out + (b * N + i) * C + h * dh;
        if (patch && head_patched(*patch, b, h * N + i)) {
          const int64_t src = i == 0 ? 0 : i + patch->position_shift;
          std::memcpy(o, patch->means + (src * H + h) * dh, sizeof(float) * dh);
          continue;
        }
        const float* qi = base + i * row + h * dh;
        std::fill(scores.begin(), scores.end(), 0.0f);
        for (int d = 0; d < dh; ++d) simd::axpy(qi[d], &kt[d * N], scores.data(), N);
        const float mx = simd::max_of(scores.data(), N) * scale;
        const float inv = 1.0f / simd::exp_scaled_sum(scores.data(), N, scale, mx);
        std::fill(o, o + dh, 0.0f);
        for (int64_t j = 0; j < N; ++j) simd::axpy(scores[j] * inv, &v[j * dh], o, dh);
      }
    }
  });
  if (capture) {
    pool.parallel_for(N, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float* c = capture + i * C;
        for (int64_t b = 0; b < B; ++b) {
          const float* o = out + (b * N + i) * C;
          for (int64_t j = 0; j < C; ++j) c[j] += o[j];
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
