// 3x3 stride-1 convolution (padding 1, optional nearest x2 upsampling folded in) by Winograd F(4x4, 3x3)
// (Lavin & Gray 2016): each 4x4 output tile costs 36 multiply-adds per (input, output) channel pair
// instead of 144, in exchange for linear transforms of the input tiles (6x6), the weights and the outputs.
//
//   U[xi][co][ci] = (G g G^T)[xi]        weights, transformed once per call
//   V[xi][ci][t]  = (B^T d B)[xi]         input tile t (6x6, overlapping by 2), per input channel
//   M[xi][co][t]  = sum_ci U[xi][co][ci] V[xi][ci][t]   36 independent GEMMs (the microkernel's)
//   y tile        = A^T M A + bias (+ residual)
//
// Work is cut into blocks of tiles (one or two 48-tile GEMM panels), each block transformed, multiplied
// and written back while its V and M are in cache. Every transform is vectorised across 16 tiles: input
// rows are first combined along y (contiguous), then split into the four column phases (x mod 4), so a
// tile's 6 columns are plain loads of phases 0-3 at its tile index and of phases 0-1 at the next one.
//
// Accuracy: the transforms multiply by up to 5 and 8 and divide by 6 and 24, so the rounding error is
// larger than the direct convolution's. On the VQGAN decoder's shapes (O(1) activations, 1/sqrt(fan_in)
// weights) the largest difference from the direct conv is 1.0e-5 to 1.9e-5 of the output's largest
// value and the rms difference 4e-7 to 7e-7 (Conv3x3Winograd.ErrorOnDecoderShapes prints them); the
// direct conv itself is within ~1e-7 of double precision.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "cpu/conv.h"
#include "cpu/gemm_driver.h"
#include "vtv/error.h"

namespace vtv::cpu {

using namespace gemm_detail;

namespace {

constexpr int kXi = 36;     // transformed tile elements (6 x 6)
#ifndef VTV_WINO_PANELS
#define VTV_WINO_PANELS 1
#endif
constexpr int kL = 16;      // tiles per vector
constexpr int kPrefetchChannels = 2;  // the input transform prefetches this many channels ahead
static_assert(NR % kL == 0, "winograd: the GEMM panel width must be a multiple of 16 tiles");

// ---- 16-lane vectors --------------------------------------------------------------------------------
#if defined(__AVX512F__)
using V = __m512;
using Mask = __mmask16;
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline V vload_mask(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
inline void vstore_mask(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
inline V vset(float x) { return _mm512_set1_ps(x); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vmul(V a, float s) { return _mm512_mul_ps(a, _mm512_set1_ps(s)); }
inline V vfma(V a, float s, V c) { return _mm512_fmadd_ps(a, _mm512_set1_ps(s), c); }   // a*s + c
inline V vfnma(V a, float s, V c) { return _mm512_fnmadd_ps(a, _mm512_set1_ps(s), c); }  // c - a*s
// p[0..64) -> out[m][u] = p[4u + m], u < 16.
inline void deinterleave4(const float* p, V out[4]) {
  const V a = vload(p), b = vload(p + 16), c = vload(p + 32), d = vload(p + 48);
  const __m512i i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i i23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const V ab01 = _mm512_permutex2var_ps(a, i01, b), ab23 = _mm512_permutex2var_ps(a, i23, b);
  const V cd01 = _mm512_permutex2var_ps(c, i01, d), cd23 = _mm512_permutex2var_ps(c, i23, d);
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  out[0] = _mm512_permutex2var_ps(ab01, lo, cd01);
  out[1] = _mm512_permutex2var_ps(ab01, hi, cd01);
  out[2] = _mm512_permutex2var_ps(ab23, lo, cd23);
  out[3] = _mm512_permutex2var_ps(ab23, hi, cd23);
}
// in[c][t] (c < 4, t < 16) -> out[k][j] = in[j % 4][4k + j / 4]: tile t's four values at 4t..4t+3.
inline void interleave4(const V in[4], V out[4]) {
  const __m512i plo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i phi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const V lo01 = _mm512_permutex2var_ps(in[0], plo, in[1]), hi01 = _mm512_permutex2var_ps(in[0], phi, in[1]);
  const V lo23 = _mm512_permutex2var_ps(in[2], plo, in[3]), hi23 = _mm512_permutex2var_ps(in[2], phi, in[3]);
  const __m512i q0 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const __m512i q1 = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  out[0] = _mm512_permutex2var_ps(lo01, q0, lo23);
  out[1] = _mm512_permutex2var_ps(lo01, q1, lo23);
  out[2] = _mm512_permutex2var_ps(hi01, q0, hi23);
  out[3] = _mm512_permutex2var_ps(hi01, q1, hi23);
}
#else
struct V {
  float v[kL];
};
using Mask = uint32_t;
inline V vload(const float* p) {
  V r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline V vload_mask(const float* p, Mask m) {
  V r;
  for (int i = 0; i < kL; ++i) r.v[i] = (m >> i & 1) ? p[i] : 0.0f;
  return r;
}
inline void vstore(float* p, V v) { std::memcpy(p, v.v, sizeof v.v); }
inline void vstore_mask(float* p, Mask m, V v) {
  for (int i = 0; i < kL; ++i)
    if (m >> i & 1) p[i] = v.v[i];
}
inline V vset(float x) {
  V r;
  for (float& e : r.v) e = x;
  return r;
}
#define VTV_WINO_LANEWISE(expr) \
  V r;                          \
  for (int i = 0; i < kL; ++i) r.v[i] = (expr); \
  return r
inline V vadd(V a, V b) { VTV_WINO_LANEWISE(a.v[i] + b.v[i]); }
inline V vsub(V a, V b) { VTV_WINO_LANEWISE(a.v[i] - b.v[i]); }
inline V vmul(V a, float s) { VTV_WINO_LANEWISE(a.v[i] * s); }
inline V vfma(V a, float s, V c) { VTV_WINO_LANEWISE(a.v[i] * s + c.v[i]); }
inline V vfnma(V a, float s, V c) { VTV_WINO_LANEWISE(c.v[i] - a.v[i] * s); }
#undef VTV_WINO_LANEWISE
inline void deinterleave4(const float* p, V out[4]) {
  for (int m = 0; m < 4; ++m)
    for (int u = 0; u < kL; ++u) out[m].v[u] = p[4 * u + m];
}
inline void interleave4(const V in[4], V out[4]) {
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < kL; ++j) out[k].v[j] = in[j % 4].v[4 * k + j / 4];
}
#endif

// Bits [lo, hi) of a 16-bit lane mask (empty when hi <= lo; lo, hi clipped to [0, 16]).
inline Mask lane_mask(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, kL);
  hi = std::clamp<int64_t>(hi, 0, kL);
  if (hi <= lo) return 0;
  return static_cast<Mask>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// Where 16 consecutive (padded, upsampled) input columns starting at input column ix come from: lanes
// inside the image, and for upsampling the stored columns base .. base + 8 they duplicate.
struct ColSrc {
  int64_t ix = 0, base = 0;
  Mask lanes = 0, src = 0;
  bool odd = false;
};

ColSrc col_src(const Conv2dShape& s, int64_t ix) {
  ColSrc c;
  c.ix = ix;
  c.lanes = lane_mask(-ix, s.in_w() - ix);
  if (s.upsample2x) {
    c.odd = (ix & 1) != 0;
    c.base = (ix - (c.odd ? 1 : 0)) / 2;  // floor(ix / 2)
    c.src = lane_mask(-c.base, s.W - c.base) & lane_mask(0, 9);
  }
  return c;
}

// The 16 columns described by c of one stored input row (zeros outside the image).
inline V load_cols(const float* row, const ColSrc& c, bool upsample2x) {
  if (!upsample2x) return vload_mask(row + c.ix, c.lanes);
  const V v = vload_mask(row + c.base, c.src);
#if defined(__AVX512F__)
  const __m512i even = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i odd = _mm512_setr_epi32(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8);
  return _mm512_maskz_permutexvar_ps(c.lanes, c.odd ? odd : even, v);
#else
  V r;
  for (int l = 0; l < kL; ++l) r.v[l] = (c.lanes >> l & 1) ? v.v[(l + (c.odd ? 1 : 0)) >> 1] : 0.0f;
  return r;
#endif
}

// B^T d: the six outputs of the 1-D input transform of d0..d5.
inline void input_1d(const V d[6], V o[6]) {
  const V t0 = vfnma(d[2], 4.0f, d[4]);  // d4 - 4 d2
  const V t1 = vfnma(d[1], 4.0f, d[3]);  // d3 - 4 d1
  const V t2 = vsub(d[4], d[2]);
  const V t3 = vmul(vsub(d[3], d[1]), 2.0f);
  o[0] = vfma(d[0], 4.0f, vfnma(d[2], 5.0f, d[4]));
  o[1] = vadd(t0, t1);
  o[2] = vsub(t0, t1);
  o[3] = vadd(t2, t3);
  o[4] = vsub(t2, t3);
  o[5] = vfma(d[1], 4.0f, vfnma(d[3], 5.0f, d[5]));
}

// A^T m: the four outputs of the 1-D output transform of m0..m5.
inline void output_1d(const V m[6], V o[4]) {
  const V a = vadd(m[1], m[2]), b = vsub(m[1], m[2]), c = vadd(m[3], m[4]), d = vsub(m[3], m[4]);
  o[0] = vadd(vadd(m[0], a), c);
  o[1] = vfma(d, 2.0f, b);
  o[2] = vfma(c, 4.0f, a);
  o[3] = vadd(vfma(d, 8.0f, b), m[5]);
}

// One run of consecutive tiles in a block: sample n, tile row ty, tile columns tx0 .. tx0+len-1, at
// block-local tile indices t0 .. t0+len-1.
struct Run {
  int64_t n, ty, tx0, t0, len;
};

struct Plan {
  int64_t oh, ow, th, tw, tiles_per_sample, tiles;
  int64_t m_panels, Mpad;   // output-channel panels of MR
  int64_t panels_per_block;  // GEMM panels (NR tiles) per block
  int64_t block_tiles;
  int64_t co_groups;        // output-channel groups per block (to share small layers among threads)
  int64_t kc;               // K block of the 36 GEMMs
  int64_t q_max;            // floats per padded row segment (multiple of 64)
};

Plan make_plan(const Conv2dShape& s, int threads) {
  Plan p;
  p.oh = s.out_h();
  p.ow = s.out_w();
  p.th = (p.oh + 3) / 4;
  p.tw = (p.ow + 3) / 4;
  p.tiles_per_sample = p.th * p.tw;
  p.tiles = s.N * p.tiles_per_sample;
  p.m_panels = (s.Co + MR - 1) / MR;
  p.Mpad = p.m_panels * MR;
  p.panels_per_block = VTV_WINO_PANELS;
  p.block_tiles = p.panels_per_block * NR;
  const int64_t blocks = (p.tiles + p.block_tiles - 1) / p.block_tiles;
  // Few blocks: split the output channels too, so every thread has work (each group transforms the
  // block's input itself; that is cheap next to its GEMMs).
  p.co_groups = 1;
  if (threads > 1 && blocks < 4 * threads) {
    const int64_t per = (blocks + threads - 1) / threads;
    const double balance = static_cast<double>(blocks) / static_cast<double>(per * threads);
    if (balance < 0.9) p.co_groups = std::min<int64_t>(threads, p.m_panels);
  }
  p.kc = std::min<int64_t>(s.Ci, 256);
  const int64_t run_max = std::min(p.tw, p.block_tiles);
  p.q_max = (run_max + 1 + kL - 1) / kL * kL * 4;
  return p;
}

// The block's runs of tiles in one tile row each.
void block_runs(const Plan& p, int64_t g0, int64_t count, std::vector<Run>& runs) {
  runs.clear();
  for (int64_t t = 0; t < count;) {
    const int64_t g = g0 + t, n = g / p.tiles_per_sample, r = g % p.tiles_per_sample;
    const int64_t ty = r / p.tw, tx = r % p.tw, len = std::min(count - t, p.tw - tx);
    runs.push_back({n, ty, tx, t, len});
    t += len;
  }
}

// G g: the six outputs of the 1-D weight transform of g0..g2.
inline void weight_1d(const V g[3], V t[6]) {
  const V a = vadd(g[0], g[2]);
  const V b = vfma(g[0], 1.0f / 24.0f, vmul(g[2], 1.0f / 6.0f)), c = vmul(g[1], 1.0f / 12.0f);
  t[0] = vmul(g[0], 0.25f);
  t[1] = vmul(vadd(a, g[1]), -1.0f / 6.0f);
  t[2] = vmul(vsub(a, g[1]), -1.0f / 6.0f);
  t[3] = vadd(b, c);
  t[4] = vsub(b, c);
  t[5] = g[2];
}

// U[xi][panel][ci][MR] = (G g G^T)[xi] for g = w[co][ci], co = panel*MR + lane (zero past Co). Vectorised
// over 16 (ci, co) pairs whose 16 results are contiguous in U: two input channels x MR = 8 output channels.
void transform_weights(ThreadPool& pool, int64_t Co, int64_t Ci, const float* w, float* U) {
  const int64_t m_panels = (Co + MR - 1) / MR;
  pool.parallel_for(m_panels, [&](int64_t b, int64_t e) {
    for (int64_t cp = b; cp < e; ++cp) {
      for (int64_t ci = 0; ci < Ci; ci += 2) {
        // Lane l: output channel cp*MR + l % MR, input channel ci + l / MR.
        V g[9];
#if defined(__AVX512F__)
        static_assert(MR == 8, "the AVX-512 weight transform assumes MR = 8");
        Mask valid = 0;
        for (int l = 0; l < kL; ++l)
          if (cp * MR + l % MR < Co && ci + l / MR < Ci) valid |= Mask(1u << l);
        const __m512i idx = _mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7),
                               _mm512_set1_epi32(static_cast<int>(Ci * 9))),
            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9));
        const float* base = w + (cp * MR * Ci + ci) * 9;
        for (int k = 0; k < 9; ++k) g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, base + k, 4);
#else
        for (int l = 0; l < kL; ++l) {
          const int64_t co = cp * MR + l % MR, cj = ci + l / MR;
          for (int k = 0; k < 9; ++k) g[k].v[l] = co < Co && cj < Ci ? w[(co * Ci + cj) * 9 + k] : 0.0f;
        }
#endif
        // t = G g (rows r, columns c), then u = t G^T.
        V t[6][3];
        for (int c = 0; c < 3; ++c) {
          const V col[3] = {g[c], g[3 + c], g[6 + c]};
          V o[6];
          weight_1d(col, o);
          for (int r = 0; r < 6; ++r) t[r][c] = o[r];
        }
        const int64_t lanes = std::min<int64_t>(2, Ci - ci) * MR;
        for (int r = 0; r < 6; ++r) {
          V u[6];
          weight_1d(t[r], u);
          for (int c = 0; c < 6; ++c) {
            float* d = U + (((r * 6 + c) * m_panels + cp) * Ci + ci) * MR;
            if (lanes == kL) {
              vstore(d, u[c]);
            } else {
              vstore_mask(d, lane_mask(0, lanes), u[c]);
            }
          }
        }
      }
    }
  });
}

struct Scratch {
  float* V;    // [36][P][Ci][NR]
  float* M;    // [36][P][mpad_group][NR]
  int64_t v_xi, m_xi;  // floats from one transformed element's slice of V (M) to the next
  float* Z;    // [6][4][kL + q_max/4 + 2*kL]: column phases of the y-transformed rows
  int64_t z_stride;
};

// V for the block's tiles, channels [0, Ci): per run and channel, the 6 padded input rows of its tile
// row (zeros outside the image, upsampling resolved), combined along y (B^T d), split into column
// phases, then combined along x per 16 tiles and stored in the tiles' lanes.
void input_transform(const Conv2dShape& s, const Plan& p, const float* x, const std::vector<Run>& runs,
                     int64_t block_count, const Scratch& sc) {
  const int64_t Ci = s.Ci, ih = s.in_h(), P = p.panels_per_block;
  const int64_t chunks = (block_count + kL - 1) / kL;
  // Lanes past the block's tiles (a partial last panel) are zero, so the GEMMs read finite values.
  if (block_count < P * NR) {
    const int64_t p_last = (block_count - 1) / NR, lane0 = block_count - p_last * NR;
    for (int xi = 0; xi < kXi; ++xi)
      for (int64_t pp = p_last; pp < P; ++pp)
        for (int64_t ci = 0; ci < Ci; ++ci) {
          float* d = sc.V + xi * sc.v_xi + (pp * Ci + ci) * NR;
          const int64_t from = pp == p_last ? lane0 : 0;
          std::memset(d + from, 0, sizeof(float) * (NR - from));
        }
  }
  std::vector<ColSrc> cols;
  for (const Run& run : runs) {
    const int64_t q = (run.len + 1 + kL - 1) / kL * kL * 4;  // padded columns of this run, multiple of 64
    const int64_t ix0 = 4 * run.tx0 - s.pad_left;              // input column of the run's first padded column
    cols.clear();
    for (int64_t c = 0; c < q; c += kL) cols.push_back(col_src(s, ix0 + c));
    // The stored input columns this run reads, for prefetching.
    const int64_t sx0 = std::max<int64_t>(0, s.upsample2x ? ix0 >> 1 : ix0);
    const int64_t sx1 = std::min<int64_t>(s.W, s.upsample2x ? (ix0 + q + 1) >> 1 : ix0 + q);
    auto row_of = [&](int64_t ci, int i) -> const float* {
      const int64_t iy = 4 * run.ty + i - s.pad_top;
      if (iy < 0 || iy >= ih) return nullptr;
      return x + ((run.n * Ci + ci) * s.H + (s.upsample2x ? iy >> 1 : iy)) * s.W;
    };
    for (int64_t ci = 0; ci < Ci; ++ci) {
      // The tile row's six padded input rows (null: zero padding).
      const float* rows[6];
      for (int i = 0; i < 6; ++i) rows[i] = row_of(ci, i);
      // The rows come from memory (one pass over the input): fetch those of the channel after next now.
      if (ci + kPrefetchChannels < Ci) {
        for (int i = 0; i < 6; ++i) {
          const float* r = row_of(ci + kPrefetchChannels, i);
          if (!r) continue;
          for (int64_t c = sx0; c < sx1; c += 16) __builtin_prefetch(r + c);
          __builtin_prefetch(r + sx1 - 1);
        }
      }
      // y-transform of 16 columns at a time, read straight from the rows (zero padding and upsampling
      // resolved by masked loads), then the column phases: Z[j][m][kL + u] = (B^T d)_j at column 4u + m.
      for (int64_t c = 0; c < q; c += 4 * kL) {
        alignas(64) float zr[6][4 * kL];
        for (int64_t h = 0; h < 4; ++h) {
          const ColSrc& cs = cols[static_cast<size_t>(c / kL + h)];
          V d[6], o[6];
          for (int i = 0; i < 6; ++i) d[i] = rows[i] ? load_cols(rows[i], cs, s.upsample2x) : vset(0.0f);
          input_1d(d, o);
          for (int j = 0; j < 6; ++j) vstore(zr[j] + h * kL, o[j]);
        }
        for (int j = 0; j < 6; ++j) {
          V ph[4];
          deinterleave4(zr[j], ph);
          for (int m = 0; m < 4; ++m) vstore(sc.Z + (j * 4 + m) * sc.z_stride + kL + c / 4, ph[m]);
        }
      }
      // x-transform per 16-lane chunk of the block that this run touches; lane l is tile t = 16 ch + l,
      // at phase index u = t - run.t0 (and u + 1 for the tile's columns 4 and 5).
      const int64_t ch0 = run.t0 / kL, ch1 = std::min(chunks, (run.t0 + run.len + kL - 1) / kL);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t base = kL + ch * kL - run.t0;  // Z index of lane 0 (>= 1)
        const Mask mask = lane_mask(run.t0 - ch * kL, run.t0 + run.len - ch * kL);
        const int64_t pp = ch * kL / NR, lane0 = ch * kL % NR;
        for (int j = 0; j < 6; ++j) {
          const float* zj = sc.Z + j * 4 * sc.z_stride + base;
          V d[6], o[6];
          d[0] = vload(zj);
          d[1] = vload(zj + sc.z_stride);
          d[2] = vload(zj + 2 * sc.z_stride);
          d[3] = vload(zj + 3 * sc.z_stride);
          d[4] = vload(zj + 1);
          d[5] = vload(zj + sc.z_stride + 1);
          input_1d(d, o);
          for (int k = 0; k < 6; ++k)
            vstore_mask(sc.V + (j * 6 + k) * sc.v_xi + (pp * Ci + ci) * NR + lane0, mask, o[k]);
        }
      }
    }
  }
}

// The 36 GEMMs of the block for output panels [cp0, cp1): M[xi][pp][co - cp0*MR][NR].
void block_gemms(const Conv2dShape& s, const Plan& p, const float* U, int64_t cp0, int64_t cp1, int64_t count,
                 const Scratch& sc) {
  const int64_t panels = (count + NR - 1) / NR;
  const int64_t Ci = s.Ci, mg = (cp1 - cp0) * MR;
  for (int xi = 0; xi < kXi; ++xi) {
    for (int64_t k0 = 0; k0 < Ci; k0 += p.kc) {
      const int64_t kc = std::min(p.kc, Ci - k0);
      for (int64_t cp = cp0; cp < cp1; ++cp) {
        const float* A = U + ((xi * p.m_panels + cp) * Ci + k0) * MR;
        // The transformed weights stream from L3 (all of U per block): fetch the next panel's while
        // this one computes (its first lines are still missing when it starts otherwise).
        const float* next = cp + 1 < cp1 ? A + Ci * MR : (xi + 1 < kXi ? U + (((xi + 1) * p.m_panels + cp0) * Ci + k0) * MR : nullptr);
        if (next)
          for (int64_t f = 0; f < kc * MR; f += 16) __builtin_prefetch(next + f);
        for (int64_t pp = 0; pp < panels; ++pp) {
          const float* B = sc.V + xi * sc.v_xi + (pp * Ci + k0) * NR;
          float* C = sc.M + xi * sc.m_xi + (pp * mg + (cp - cp0) * MR) * NR;
          // The block's last panel may hold only a few tiles: multiply just the 16-tile groups it has.
          microkernel_leading_cols(kc, A, B, C, NR, std::min<int64_t>(NR, count - pp * NR), k0 > 0);
        }
      }
    }
  }
}

// y for the block's tiles and output channels [co0, co1): A^T M A + bias (+ residual), per 16 tiles,
// written row by row into the tiles' 4x4 output squares (clipped to the output size).
void output_transform(const Conv2dShape& s, const Plan& p, const std::vector<Run>& runs, int64_t block_count,
                      int64_t co0, int64_t co1, int64_t mg, const float* bias, const float* residual, float* y,
                      const Scratch& sc) {
  const int64_t Co = s.Co;
  const int64_t chunks = (block_count + kL - 1) / kL;
  for (int64_t co = co0; co < co1; ++co) {
    const float b = bias ? bias[co] : 0.0f;
    // The output (and residual) rows of the channel after next: written (read) from memory otherwise.
    if (co + kPrefetchChannels < co1) {
      for (const Run& run : runs) {
        for (int r = 0; r < 4; ++r) {
          const int64_t oy = 4 * run.ty + r;
          if (oy >= p.oh) break;
          const int64_t c0 = 4 * run.tx0, c1 = std::min(p.ow, 4 * (run.tx0 + run.len));
          const int64_t off = ((run.n * Co + co + kPrefetchChannels) * p.oh + oy) * p.ow;
          for (int64_t c = c0; c < c1; c += 16) {
            __builtin_prefetch(y + off + c, 1);
            if (residual && residual != y) __builtin_prefetch(residual + off + c);
          }
          __builtin_prefetch(y + off + c1 - 1, 1);
        }
      }
    }
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t pp = ch * kL / NR, lane0 = ch * kL % NR;
      const float* m0 = sc.M + (pp * mg + (co - co0)) * NR + lane0;
      const int64_t xi_stride = sc.m_xi;
      // Along y: s[r][k] = sum_j A^T[r][j] M[j][k].
      V t[4][6];
      for (int k = 0; k < 6; ++k) {
        V m[6], o[4];
        for (int j = 0; j < 6; ++j) m[j] = vload(m0 + (j * 6 + k) * xi_stride);
        output_1d(m, o);
        for (int r = 0; r < 4; ++r) t[r][k] = o[r];
      }
      for (int r = 0; r < 4; ++r) {
        V o[4], rows[4];
        output_1d(t[r], o);
        for (int c = 0; c < 4; ++c) o[c] = vadd(o[c], vset(b));
        interleave4(o, rows);  // rows[k]: tiles 4k..4k+3 of the chunk, 4 columns each
        for (const Run& run : runs) {
          if (run.t0 + run.len <= ch * kL || run.t0 >= (ch + 1) * kL) continue;
          const int64_t oy = 4 * run.ty + r;
          if (oy >= p.oh) continue;
          // Lane l of the chunk is tile column tx = run.tx0 + ch*kL + l - run.t0, output columns 4tx..4tx+3.
          const int64_t l_lo = std::max<int64_t>(run.t0 - ch * kL, 0), l_hi = std::min<int64_t>(run.t0 + run.len - ch * kL, kL);
          const int64_t col0 = 4 * (run.tx0 + ch * kL - run.t0);  // output column of float 0 (may be < 0)
          const int64_t f_lo = std::max<int64_t>(4 * l_lo, -col0), f_hi = std::min<int64_t>(4 * l_hi, p.ow - col0);
          const int64_t off = ((run.n * Co + co) * p.oh + oy) * p.ow + col0;
          for (int k = 0; k < 4; ++k) {
            const Mask mk = lane_mask(f_lo - k * kL, f_hi - k * kL);
            if (!mk) continue;
            const int64_t o = off + k * kL;
            V v = rows[k];
            if (residual) v = vadd(v, vload_mask(residual + o, mk));
            vstore_mask(y + o, mk, v);
          }
        }
      }
    }
  }
}

}  // namespace

bool winograd_supported(const Conv2dShape& s) {
  return s.k == 3 && s.stride == 1 && s.pad_top == 1 && s.pad_left == 1 && s.pad_bottom == 1 && s.pad_right == 1;
}

const float* ConvWeightCache::winograd(ThreadPool& pool, const float* w, int64_t Co, int64_t Ci) {
  Entry& e = winograd_[w];
  if (!e.data) {
    const int64_t floats = kXi * ((Co + MR - 1) / MR * MR) * Ci;
    e.data.reset(static_cast<float*>(std::aligned_alloc(64, (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64)));
    if (!e.data) throw std::bad_alloc();
    e.co = Co;
    e.ci = Ci;
    bytes_ += floats * int64_t(sizeof(float));
    transform_weights(pool, Co, Ci, w, e.data.get());
  }
  check(e.co == Co && e.ci == Ci, "ConvWeightCache: one weight pointer used with two shapes");
  return e.data.get();
}

void conv2d_winograd(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias,
                     float* y, const float* residual, ConvWeightCache* cache) {
  check(winograd_supported(s), "conv2d_winograd: needs a 3x3 kernel, stride 1 and padding 1");
  check(residual == nullptr || residual != x, "conv2d: residual must not alias the input x");
  const int threads = pool.size();
  const Plan p = make_plan(s, threads);
  const float* U;
  if (cache) {
    U = cache->winograd(pool, w, s.Co, s.Ci);
  } else {
    thread_local ScratchBuffer u_buf;
    float* u = u_buf.get(kXi * p.Mpad * s.Ci);
    transform_weights(pool, s.Co, s.Ci, w, u);
    U = u;
  }
  const int64_t blocks = (p.tiles + p.block_tiles - 1) / p.block_tiles;
  const int64_t items = blocks * p.co_groups;
  const int64_t mg_max = (p.m_panels + p.co_groups - 1) / p.co_groups * MR;
  const int64_t z_stride = kL + p.q_max / 4 + 2 * kL;
  pool.parallel_for(items, [&](int64_t b, int64_t e) {
    thread_local ScratchBuffer v_buf, m_buf, z_buf;
    Scratch sc;
    // Slices of V and M one per transformed element, 64 bytes more apart than their size: a transform
    // touches all 36 at once, and slices a multiple of 4 KiB apart would share one set of the L1 cache.
    sc.v_xi = p.panels_per_block * s.Ci * NR + kL;
    sc.m_xi = p.panels_per_block * mg_max * NR + kL;
    sc.V = v_buf.get(kXi * sc.v_xi);
    sc.M = m_buf.get(kXi * sc.m_xi);
    sc.z_stride = z_stride;
    sc.Z = z_buf.get(24 * z_stride);
    // Lanes past a run read Z outside what the run wrote; keep those values finite.
    std::memset(sc.Z, 0, sizeof(float) * 24 * z_stride);
    std::vector<Run> runs;
    int64_t runs_block = -1;
    for (int64_t it = b; it < e; ++it) {
      const int64_t blk = it / p.co_groups, grp = it % p.co_groups;
      const int64_t g0 = blk * p.block_tiles, count = std::min(p.block_tiles, p.tiles - g0);
      const int64_t cp0 = p.m_panels * grp / p.co_groups, cp1 = p.m_panels * (grp + 1) / p.co_groups;
      if (cp1 <= cp0) continue;
      if (runs_block != blk) {
        block_runs(p, g0, count, runs);
        input_transform(s, p, x, runs, count, sc);
        runs_block = blk;
      }
      block_gemms(s, p, U, cp0, cp1, count, sc);
      output_transform(s, p, runs, count, cp0 * MR, std::min(s.Co, cp1 * MR), (cp1 - cp0) * MR, bias, residual, y, sc);
    }
  });
}

}  // namespace vtv::cpu
