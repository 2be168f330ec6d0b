// LayerNorm and GroupNorm. Statistics are two-pass in fp32 (mean first, then the mean squared deviation),
// which is as accurate as PyTorch's Welford for these sizes and vectorises cleanly.
#include "cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/simd.h"
#include "vtv/error.h"

namespace vtv::cpu {

namespace {

// Sums of long runs (a GroupNorm group is up to 16 x 224 x 224 values) are taken in chunks, each over
// 2 x lanes partial sums, so the rounding error grows with chunk/lanes + n/chunk rather than n/lanes.
constexpr int64_t kChunk = 4096;

float sum_of_chunk(const float* x, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  vf s0 = set1(0.0f), s1 = set1(0.0f);
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    s0 = add(s0, load(x + i));
    s1 = add(s1, load(x + i + kLanes));
  }
  for (; i + kLanes <= n; i += kLanes) s0 = add(s0, load(x + i));
  float s = reduce_add(add(s0, s1));
  for (; i < n; ++i) s += x[i];
  return s;
}

float sum_sq_dev_chunk(const float* x, int64_t n, float mean) {
  using namespace simd;
  int64_t i = 0;
  vf m = set1(mean), s0 = set1(0.0f), s1 = set1(0.0f);
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    vf d0 = sub(load(x + i), m), d1 = sub(load(x + i + kLanes), m);
    s0 = fma(d0, d0, s0);
    s1 = fma(d1, d1, s1);
  }
  for (; i + kLanes <= n; i += kLanes) {
    vf d = sub(load(x + i), m);
    s0 = fma(d, d, s0);
  }
  float s = reduce_add(add(s0, s1));
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

float sum_of(const float* x, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; i += kChunk) s += sum_of_chunk(x + i, std::min(kChunk, n - i));
  return s;
}

float sum_sq_dev(const float* x, int64_t n, float mean) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; i += kChunk) s += sum_sq_dev_chunk(x + i, std::min(kChunk, n - i), mean);
  return s;
}

}  // namespace

void layer_norm(ThreadPool& pool, const float* x, int64_t rows, int64_t C, const float* gamma, const float* beta,
                float eps, float* y) {
  check(rows >= 0 && C > 0, "layer_norm: rows must be >= 0 and C > 0");
  pool.parallel_for(rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * C;
      float* yr = y + r * C;
      const float mean = sum_of(xr, C) / C;
      const float rstd = 1.0f / std::sqrt(sum_sq_dev(xr, C, mean) / C + eps);
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    }
  }, 4);
}

void group_norm(ThreadPool& pool, const float* x, int64_t N, int64_t C, int64_t HW, int groups, float eps,
                const float* gamma, const float* beta, bool swish, float* y) {
  check(N >= 0 && C > 0 && HW > 0 && groups > 0, "group_norm: sizes must be positive");
  check(C % groups == 0, "group_norm: C must be a multiple of groups");
  const int64_t cpg = C / groups, count = cpg * HW;
  // One (sample, group) per task: its statistics, then its channels normalised (a group's channels are
  // contiguous, so aliasing y == x is safe).
  pool.parallel_for(N * groups, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t n = t / groups, g = t % groups;
      const float* xg = x + (n * C + g * cpg) * HW;
      float* yg = y + (n * C + g * cpg) * HW;
      const float mean = sum_of(xg, count) / count;
      const float rstd = 1.0f / std::sqrt(sum_sq_dev(xg, count, mean) / count + eps);
      for (int64_t c = 0; c < cpg; ++c) {
        const float a = rstd * gamma[g * cpg + c], s = beta[g * cpg + c] - mean * a;
        const float* xc = xg + c * HW;
        float* yc = yg + c * HW;
        for (int64_t i = 0; i < HW; ++i) yc[i] = xc[i] * a + s;
        if (swish) simd::swish_inplace(yc, HW);
      }
    }
  });
}

}  // namespace vtv::cpu
