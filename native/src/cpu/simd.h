// One vector type for the CPU kernels' elementwise math, chosen at compile time: AVX-512 (16 lanes),
// AVX2+FMA (8 lanes) or plain scalar. The transcendental functions (exp, erfc) are written once on top
// of the few primitives below, so every ISA computes the same approximations. Array helpers handle the
// tails with the scalar standard library.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12 reports false "may be used uninitialized" warnings inside its own AVX-512 intrinsics
// (_mm512_undefined_ps); silence them for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace vtv::cpu::simd {

#if defined(__AVX512F__)
using vf = __m512;
constexpr int kLanes = 16;
inline vf load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf set1(float x) { return _mm512_set1_ps(x); }
inline vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf div(vf a, vf b) { return _mm512_div_ps(a, b); }
inline vf fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
inline vf vabs(vf a) { return _mm512_abs_ps(a); }
inline vf round_nearest(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// a * 2^n for integral n in [-127, 128].
inline vf ldexp(vf a, vf n) { return _mm512_scalef_ps(a, n); }
// c ? a : b with c = (x >= 0)
inline vf select_nonneg(vf x, vf a, vf b) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
}
// (Not _mm512_reduce_*_ps: GCC 12 warns about uninitialised values inside them.)
// v where x >= limit, else +0.
inline vf keep_if_ge(vf x, float limit, vf v) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(limit), _CMP_GE_OQ), v);
}
inline float reduce_add(vf a) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float reduce_max(vf a) {
  __m256 h = _mm256_max_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#elif defined(__AVX2__) && defined(__FMA__)
using vf = __m256;
constexpr int kLanes = 8;
inline vf load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf set1(float x) { return _mm256_set1_ps(x); }
inline vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf div(vf a, vf b) { return _mm256_div_ps(a, b); }
inline vf fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
inline vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline vf round_nearest(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vf ldexp(vf a, vf n) {
  // Two half steps keep each exponent within the normal range for n in [-127, 128].
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
  auto pow2 = [](__m256i e) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23)); };
  return _mm256_mul_ps(_mm256_mul_ps(a, pow2(h1)), pow2(h2));
}
inline vf select_nonneg(vf x, vf a, vf b) {
  return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
inline vf keep_if_ge(vf x, float limit, vf v) {
  return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(limit), _CMP_GE_OQ), v);
}
inline float reduce_add(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float reduce_max(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
using vf = float;
constexpr int kLanes = 1;
inline vf load(const float* p) { return *p; }
inline void store(float* p, vf v) { *p = v; }
inline vf set1(float x) { return x; }
inline vf add(vf a, vf b) { return a + b; }
inline vf sub(vf a, vf b) { return a - b; }
inline vf mul(vf a, vf b) { return a * b; }
inline vf div(vf a, vf b) { return a / b; }
inline vf fma(vf a, vf b, vf c) { return std::fma(a, b, c); }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vabs(vf a) { return std::fabs(a); }
inline vf round_nearest(vf a) { return std::nearbyint(a); }
inline vf ldexp(vf a, vf n) { return std::ldexp(a, static_cast<int>(n)); }
inline vf select_nonneg(vf x, vf a, vf b) { return x >= 0 ? a : b; }
inline vf keep_if_ge(vf x, float limit, vf v) { return x >= limit ? v : 0.0f; }
inline float reduce_add(vf a) { return a; }
inline float reduce_max(vf a) { return a; }
#endif

// exp(x), relative error ~2 ulp over the float range (Cephes polynomial). Below -87.3 the result is
// exactly 0 rather than a subnormal: subnormal operands cost ~100 cycles each on x86 (microcode assists),
// and softmax / GELU / swish tails would otherwise produce them in bulk.
inline vf exp(vf x) {
  const vf x_in = x;
  x = vmin(vmax(x, set1(-87.3f)), set1(88.7f));
  vf n = round_nearest(mul(x, set1(1.44269504088896341f)));
  vf r = fma(n, set1(-0.693359375f), x);
  r = fma(n, set1(2.12194440e-4f), r);
  vf p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  p = fma(p, mul(r, r), add(r, set1(1.0f)));
  return keep_if_ge(x_in, -87.3f, ldexp(p, n));
}

// erfc with relative error < 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit), so that GELU's
// 1 + erf(x) stays accurate for negative x where it is tiny. erfc_parts takes x together with |x| and
// x^2 (which callers can form more exactly than by squaring a rounded |x|).
inline vf erfc_parts(vf x, vf z, vf z2) {
  vf t = div(set1(1.0f), fma(z, set1(0.5f), set1(1.0f)));
  vf p = set1(0.17087277f);
  p = fma(p, t, set1(-0.82215223f));
  p = fma(p, t, set1(1.48851587f));
  p = fma(p, t, set1(-1.13520398f));
  p = fma(p, t, set1(0.27886807f));
  p = fma(p, t, set1(-0.18628806f));
  p = fma(p, t, set1(0.09678418f));
  p = fma(p, t, set1(0.37409196f));
  p = fma(p, t, set1(1.00002368f));
  p = fma(p, t, set1(-1.26551223f));
  p = sub(p, z2);
  // erfc(9) = 4e-37: beyond, flush to 0 so that no subnormal reaches the caller.
  vf r = keep_if_ge(sub(set1(0.0f), z), -9.0f, mul(t, exp(p)));
  return select_nonneg(x, r, sub(set1(2.0f), r));
}
inline vf erfc(vf x) {
  vf z = vabs(x);
  return erfc_parts(x, z, mul(z, z));
}

// GELU, exact erf form: 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2), with (x/sqrt2)^2 = x*x/2
// formed from the exact x.
inline vf gelu(vf x) {
  vf u = mul(x, set1(-0.70710678118654752f));
  return mul(mul(set1(0.5f), x), erfc_parts(u, vabs(u), mul(mul(x, x), set1(0.5f))));
}
inline float gelu_scalar(float x) { return 0.5f * x * std::erfc(x * -0.70710678118654752f); }

// swish(x) = x * sigmoid(x) = x / (1 + exp(-x)).
inline vf swish(vf x) { return div(x, add(set1(1.0f), exp(mul(x, set1(-1.0f))))); }
inline float swish_scalar(float x) { return x / (1.0f + std::exp(-x)); }

inline void gelu_inplace(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(x + i, gelu(load(x + i)));
  for (; i < n; ++i) x[i] = gelu_scalar(x[i]);
}

inline void swish_inplace(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(x + i, swish(load(x + i)));
  for (; i < n; ++i) x[i] = swish_scalar(x[i]);
}

inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  vf s0 = set1(0.0f), s1 = set1(0.0f);
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    s0 = fma(load(a + i), load(b + i), s0);
    s1 = fma(load(a + i + kLanes), load(b + i + kLanes), s1);
  }
  for (; i + kLanes <= n; i += kLanes) s0 = fma(load(a + i), load(b + i), s0);
  float s = reduce_add(add(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += a * x
inline void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  vf va = set1(a);
  for (; i + kLanes <= n; i += kLanes) store(y + i, fma(va, load(x + i), load(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

inline float max_of(const float* x, int64_t n) {
  int64_t i = 0;
  float m = -INFINITY;
  if (n >= kLanes) {
    vf vm = load(x);
    for (i = kLanes; i + kLanes <= n; i += kLanes) vm = vmax(vm, load(x + i));
    m = reduce_max(vm);
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// x[i] = exp(x[i] * scale - shift); returns the sum.
inline float exp_scaled_sum(float* x, int64_t n, float scale, float shift) {
  int64_t i = 0;
  vf s = set1(0.0f), vscale = set1(scale), vshift = set1(shift);
  for (; i + kLanes <= n; i += kLanes) {
    vf e = exp(sub(mul(load(x + i), vscale), vshift));
    store(x + i, e);
    s = add(s, e);
  }
  float sum = reduce_add(s);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] * scale - shift);
    sum += x[i];
  }
  return sum;
}

inline void scale_inplace(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

}  // namespace vtv::cpu::simd
