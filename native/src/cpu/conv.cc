// Convolution as an implicit GEMM: y[Co][P] = W[Co][Ci*k*k] x im2col[Ci*k*k][P] per sample, P = out_h*out_w,
// on the GEMM microkernel (gemm_microkernel.h). The im2col matrix is never built: B is packed one kc x NR
// panel at a time, straight from the input, and each panel is reused by every output channel.
//  - Stride 1 (every VQGAN decoder convolution, with or without the folded x2 upsampling): banded, below.
//  - 1x1 without padding: a plain GEMM on the image.
//  - Other strides (the VQGAN encoder's downsampling): the blocked GEMM driver with an im2col packer that
//    indexes the image per pixel.
#include "cpu/conv.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/gemm_driver.h"
#include "vtv/error.h"

namespace vtv::cpu {

using namespace gemm_detail;

namespace {

// ---- stride 1: banded, over the padded width ----------------------------------------------------------
//
// For a stride-1 convolution, copy a band of R output rows' worth of input (R + k - 1 rows) into a
// zero-padded buffer band[ci][rr][Wp], Wp = padded input width (upsampling resolved here). Then the
// output, computed on the flattened grid of Wp columns per row, is a GEMM whose B rows are plain shifted
// views of the band: B[(ci,ky,kx)][p] = band[ci][0][ky*Wp + kx + p]. Columns p % Wp >= out_w are
// garbage (the k-1 wrap-around columns) and are dropped when results are stored into y. Packing a B
// panel is then a few vector copies per k, and the band (not the whole image, let alone its im2col) is
// all that is ever copied. Bands are about 2048 output positions, so a band of 128 channels is ~1 MB.

#ifndef VTV_CONV_BAND_POSITIONS
#define VTV_CONV_BAND_POSITIONS 2048
#endif
constexpr int64_t kBandPositions = VTV_CONV_BAND_POSITIONS;

struct BandPlan {
  int64_t Wp = 0, rows = 0, rows_in = 0, bands = 0, band_floats = 0;
  std::vector<int64_t> k_offset;  // [Ci*k*k]: offset of B row k within the band buffer
};

BandPlan plan_bands(const Conv2dShape& s, int threads) {
  BandPlan p;
  const int64_t oh = s.out_h();
  p.Wp = s.in_w() + s.pad_left + s.pad_right;
  // About kBandPositions output positions per band (the GEMM's N), and a band count that splits evenly
  // over threads.
  int64_t rows = std::clamp<int64_t>((kBandPositions + p.Wp - 1) / p.Wp, 1, oh);
  int64_t bands = (oh + rows - 1) / rows;
  if (bands >= threads) {
    bands = (bands + threads - 1) / threads * threads;
    rows = (oh + bands - 1) / bands;
  }
  p.rows = rows;
  p.bands = (oh + rows - 1) / rows;
  p.rows_in = rows + s.k - 1;
  p.band_floats = s.Ci * p.rows_in * p.Wp + 2 * s.k;  // slack: garbage columns of the last channel read past it
  p.k_offset.resize(s.Ci * s.k * s.k);
  for (int64_t ci = 0, i = 0; ci < s.Ci; ++ci)
    for (int ky = 0; ky < s.k; ++ky)
      for (int kx = 0; kx < s.k; ++kx) p.k_offset[i++] = ci * p.rows_in * p.Wp + ky * p.Wp + kx;
  return p;
}

// band[ci][rr][cc] = the padded (upsampled) input at padded row oy0 + rr, padded column cc.
void fill_band(const Conv2dShape& s, const BandPlan& p, const float* x, int64_t oy0, int64_t ci0, int64_t ci1,
               float* band) {
  const int64_t ih = s.in_h(), iw = s.in_w();
  for (int64_t ci = ci0; ci < ci1; ++ci) {
    const float* plane = x + ci * s.H * s.W;
    for (int64_t rr = 0; rr < p.rows_in; ++rr) {
      float* d = band + (ci * p.rows_in + rr) * p.Wp;
      const int64_t iy = oy0 + rr - s.pad_top;
      if (iy < 0 || iy >= ih) {
        std::memset(d, 0, sizeof(float) * p.Wp);
        continue;
      }
      const float* row = plane + (s.upsample2x ? iy >> 1 : iy) * s.W;
      for (int c = 0; c < s.pad_left; ++c) d[c] = 0.0f;
      float* di = d + s.pad_left;
      if (s.upsample2x) {
        for (int64_t c = 0; c < s.W; ++c) di[2 * c] = di[2 * c + 1] = row[c];
      } else {
        std::memcpy(di, row, sizeof(float) * iw);
      }
      for (int c = 0; c < s.pad_right; ++c) di[iw + c] = 0.0f;
    }
  }
}

void pack_band_panel(float* dst, const BandPlan& p, const float* band, int64_t j0, int64_t nr, int64_t p0, int64_t kc) {
  const int64_t* off = p.k_offset.data() + p0;
  if (nr == NR) {
    for (int64_t q = 0; q < kc; ++q) {
      const float* src = band + off[q] + j0;
      float* d = dst + q * NR;
      for (int j = 0; j < NR; j += simd::kLanes) simd::store(d + j, simd::load(src + j));
    }
    return;
  }
  for (int64_t q = 0; q < kc; ++q) {
    const float* src = band + off[q] + j0;
    float* d = dst + q * NR;
    int64_t j = 0;
    for (; j < nr; ++j) d[j] = src[j];
    for (; j < NR; ++j) d[j] = 0.0f;
  }
}

// The weights [Co][K] packed once per call into the GEMM's A layout (shared read-only by all threads and
// bands) rather than once per band and thread.
PrepackedA prepack_weights(ThreadPool& pool, const float* w, int64_t Co, int64_t K) {
  thread_local ScratchBuffer buf;
  const int64_t Mpad = (Co + MR - 1) / MR * MR, panels = Mpad / MR;
  float* data = buf.get(Mpad * K);
  pool.parallel_for(panels, [&](int64_t b, int64_t e) {
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      for (int64_t q = b; q < e; ++q)
        pack_a_rowmajor(data + pc * Mpad + q * MR * kc, w, K, q * MR, std::min<int64_t>(MR, Co - q * MR), pc, kc);
    }
  }, 4);
  return {data, Mpad};
}

float* thread_band_buffer(int64_t floats) {
  thread_local ScratchBuffer buf;
  return buf.get(floats);
}
#ifndef VTV_CONV_PANEL_GROUP
#define VTV_CONV_PANEL_GROUP 2
#endif
// Column panels computed per sweep over the weights: each A micro-panel is then reused from L1 by both,
// halving the weight traffic, which matters for the 512-channel layers whose weights (9 MB) live in L3.
constexpr int64_t kGroup = VTV_CONV_PANEL_GROUP;

float* thread_panel_buffer(int64_t floats) {
  thread_local ScratchBuffer buf;
  return buf.get(floats);
}

// Output rows [m0, m1) (m0 a multiple of MR) x band columns [j_begin, j_end) (panel-aligned) of one band.
// kGroup column panels at a time, with the whole K loop inside: their C (rows x NR each) stays in L1/L2
// as it accumulates, and goes to y once, finished, with the wrap-around columns dropped and bias and
// residual added (the residual may alias y: element-wise, so that is safe). The weights stream from the
// pre-packed A in order.
void band_gemm_store(const Conv2dShape& s, const BandPlan& p, const PrepackedA& A, int64_t K, const float* band,
                     int64_t oy0, int64_t rows, int64_t m0, int64_t m1, int64_t j_begin, int64_t j_end,
                     const float* bias, const float* residual, float* y) {
  const int64_t ow = s.out_w(), oh = s.out_h();
  const int64_t mpad = (m1 - m0 + MR - 1) / MR * MR;
  float* Bp = pack_b_buffer(kGroup * KC * NR);
  float* Cp = thread_panel_buffer(kGroup * mpad * NR);
  // Runs of valid columns of the panel at j: band column j+t is output row (j+t)/Wp, column (j+t)%Wp.
  auto for_each_run = [&](int64_t j, int64_t nr, auto&& fn) {
    for (int64_t t = 0; t < nr;) {
      const int64_t r = (j + t) / p.Wp, c = (j + t) % p.Wp;
      const int64_t len = std::min(nr - t, p.Wp - c);
      const int64_t valid = std::clamp<int64_t>(ow - c, 0, len);
      if (valid > 0) fn(t, r, c, valid);
      t += len;
    }
  };
  for (int64_t jg = j_begin; jg < j_end; jg += kGroup * NR) {
    const int64_t width = std::min(kGroup * NR, j_end - jg), panels = (width + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      for (int64_t g = 0; g < panels; ++g)
        pack_band_panel(Bp + g * KC * NR, p, band, jg + g * NR, std::min<int64_t>(NR, j_end - jg - g * NR), pc, kc);
      const float* Ablk = A.data + pc * A.Mpad + m0 * kc;
      // Each A micro-panel (MR x kc) serves the group's panels while it is in L1.
      for (int64_t ir = 0; ir < mpad; ir += MR)
        for (int64_t g = 0; g < panels; ++g)
          microkernel_full(kc, Ablk + ir * kc, Bp + g * KC * NR, Cp + g * mpad * NR + ir * NR, NR, pc > 0);
    }
    for (int64_t g = 0; g < panels; ++g) {
      const int64_t j = jg + g * NR, nr = std::min<int64_t>(NR, j_end - j);
      const float* Cg = Cp + g * mpad * NR;
      for_each_run(j, nr, [&](int64_t t, int64_t r, int64_t c, int64_t valid) {
        for (int64_t co = m0; co < m1; ++co) {
          const float* src = Cg + (co - m0) * NR + t;
          const int64_t o = (co * oh + oy0 + r) * ow + c;
          float* d = y + o;
          const float b = bias ? bias[co] : 0.0f;
          if (residual) {
            const float* res = residual + o;
            for (int64_t q = 0; q < valid; ++q) d[q] = src[q] + b + res[q];
          } else {
            for (int64_t q = 0; q < valid; ++q) d[q] = src[q] + b;
          }
        }
      });
    }
  }
}

void conv2d_stride1_banded(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias,
                           float* y, const float* residual) {
  const BandPlan p = plan_bands(s, pool.size());
  const int64_t K = s.Ci * s.k * s.k, oh = s.out_h(), threads = pool.size();
  const PrepackedA pa = prepack_weights(pool, w, s.Co, K);
  const int64_t P = oh * s.out_w(), in_plane = s.Ci * s.H * s.W;
  const int64_t tasks = s.N * p.bands;
  auto band_rows = [&](int64_t band_index) { return std::min(p.rows, oh - band_index * p.rows); };
  if (tasks >= threads && p.bands > 1) {
    // Enough bands: each thread takes whole bands.
    pool.parallel_for(tasks, [&](int64_t b, int64_t e) {
      float* band = thread_band_buffer(p.band_floats);
      for (int64_t t = b; t < e; ++t) {
        const int64_t n = t / p.bands, bi = t % p.bands, oy0 = bi * p.rows, rows = band_rows(bi);
        fill_band(s, p, x + n * in_plane, oy0, 0, s.Ci, band);
        std::memset(band + s.Ci * p.rows_in * p.Wp, 0, sizeof(float) * 2 * s.k);
        band_gemm_store(s, p, pa, K, band, oy0, rows, 0, s.Co, 0, rows * p.Wp, bias,
                        residual ? residual + n * s.Co * P : nullptr, y + n * s.Co * P);
      }
    });
    return;
  }
  // Few bands (small images): share each band's work over threads, by column panels and, when there are
  // too few panels to balance, also by groups of output channels.
  float* band = thread_band_buffer(p.band_floats);
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / p.bands, bi = t % p.bands, oy0 = bi * p.rows, rows = band_rows(bi);
    const float* xn = x + n * in_plane;
    pool.parallel_for(s.Ci, [&](int64_t b, int64_t e) { fill_band(s, p, xn, oy0, b, e, band); }, 16);
    std::memset(band + s.Ci * p.rows_in * p.Wp, 0, sizeof(float) * 2 * s.k);
    const int64_t panels = (rows * p.Wp + NR - 1) / NR, m_panels = (s.Co + MR - 1) / MR;
    const int64_t groups = panels >= 4 * threads ? 1 : std::min(threads, m_panels);
    pool.parallel_for(groups * panels, [&](int64_t b, int64_t e) {
      for (int64_t item = b; item < e; ++item) {
        const int64_t g = item / panels, jp = item % panels;
        const int64_t m0 = m_panels * g / groups * MR, m1 = std::min(s.Co, m_panels * (g + 1) / groups * MR);
        band_gemm_store(s, p, pa, K, band, oy0, rows, m0, m1, jp * NR, std::min(rows * p.Wp, (jp + 1) * NR), bias,
                        residual ? residual + n * s.Co * P : nullptr, y + n * s.Co * P);
      }
    });
  }
}

// ---- any stride: im2col panels packed straight from the image -------------------------------------------

// One run of consecutive output pixels within a single output row.
struct RowSegment {
  int64_t oy, ox, len, offset;  // output row/col of the first pixel, count, column offset in the panel
};

struct KIndex {
  int64_t ci;
  int ky, kx;
};

void pack_im2col_panel(float* dst, const Conv2dShape& s, const KIndex* kidx, const float* x, int64_t j0, int64_t nr,
                       int64_t p0, int64_t kc) {
  const int64_t ow = s.out_w(), ih = s.in_h(), iw = s.in_w();
  RowSegment segs[NR];
  int nseg = 0;
  for (int64_t j = 0; j < nr;) {
    int64_t pix = j0 + j, oy = pix / ow, ox = pix % ow;
    int64_t len = std::min<int64_t>(nr - j, ow - ox);
    segs[nseg++] = {oy, ox, len, j};
    j += len;
  }
  for (int64_t q = 0; q < kc; ++q) {
    const KIndex& ki = kidx[p0 + q];
    const float* plane = x + ki.ci * s.H * s.W;
    float* d = dst + q * NR;
    for (int64_t j = nr; j < NR; ++j) d[j] = 0.0f;
    for (int g = 0; g < nseg; ++g) {
      const RowSegment& sg = segs[g];
      float* dd = d + sg.offset;
      const int64_t iy = sg.oy * s.stride + ki.ky - s.pad_top;
      if (iy < 0 || iy >= ih) {
        std::memset(dd, 0, sizeof(float) * sg.len);
        continue;
      }
      const float* row = plane + (s.upsample2x ? iy >> 1 : iy) * s.W;
      const int64_t ix0 = sg.ox * s.stride + ki.kx - s.pad_left;  // input column of the first pixel
      for (int64_t t = 0; t < sg.len; ++t) {
        const int64_t ix = ix0 + t * s.stride;
        dd[t] = (ix < 0 || ix >= iw) ? 0.0f : row[s.upsample2x ? ix >> 1 : ix];
      }
    }
  }
}

void check_shape(const Conv2dShape& s, const float* x, const float* residual) {
  check(s.N > 0 && s.Ci > 0 && s.H > 0 && s.W > 0 && s.Co > 0, "conv2d: sizes must be positive");
  check(s.k >= 1 && s.stride >= 1, "conv2d: kernel size and stride must be positive");
  check(s.pad_top >= 0 && s.pad_left >= 0 && s.pad_bottom >= 0 && s.pad_right >= 0, "conv2d: negative padding");
  check(s.out_h() > 0 && s.out_w() > 0, "conv2d: empty output");
  check(residual == nullptr || residual != x, "conv2d: residual must not alias the input x");
}

Conv3x3Algo algo_from_env() {
  const char* e = std::getenv("VTV_CONV3X3");
  if (!e) return Conv3x3Algo::kAuto;
  const std::string v = e;
  if (v == "direct") return Conv3x3Algo::kDirect;
  if (v == "winograd") return Conv3x3Algo::kWinograd;
  check(v == "auto" || v.empty(), "VTV_CONV3X3 must be auto, direct or winograd, not '" + v + "'");
  return Conv3x3Algo::kAuto;
}

std::atomic<Conv3x3Algo>& algo_setting() {
  static std::atomic<Conv3x3Algo> a{algo_from_env()};
  return a;
}

bool pointwise_shape(const Conv2dShape& s) {
  return s.k == 1 && s.stride == 1 && !s.upsample2x && s.pad_top == 0 && s.pad_left == 0 && s.pad_bottom == 0 &&
         s.pad_right == 0;
}

}  // namespace

void set_conv3x3_algo(Conv3x3Algo algo) { algo_setting().store(algo); }
Conv3x3Algo conv3x3_algo() { return algo_setting().load(); }

Conv3x3Algo conv3x3_choice(const Conv2dShape& s, int threads) {
  if (!winograd_supported(s)) return Conv3x3Algo::kDirect;
  const Conv3x3Algo a = conv3x3_algo();
  if (a != Conv3x3Algo::kAuto) return a;
#if defined(__AVX512F__)
  // Decided per sample (tiles of one image), never by the batch: the two algorithms round differently,
  // and a sample's outputs must not depend on which other samples share its call (the search and
  // `apply` rely on it).
  const int64_t tiles_per_sample = ((s.out_h() + 3) / 4) * ((s.out_w() + 3) / 4);
  (void)threads;
  // Measured with bench_cpu_kernels on the decoder's shapes (1 thread, CPU time): Winograd is 2-2.7x
  // faster than the direct conv from 196 tiles on (56x56), 1.5-1.7x at 49 (28x28). The 14x14 layers
  // stay direct: their 512-channel weights would need 0.4 GB of transforms for about 2% of a forward.
  return s.Ci >= 32 && s.Co >= 32 && tiles_per_sample >= 48 && s.out_h() >= 28 && s.out_w() >= 28
             ? Conv3x3Algo::kWinograd
             : Conv3x3Algo::kDirect;
#else
  (void)threads;
  return Conv3x3Algo::kDirect;
#endif
}

void conv2d_direct(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                   const float* residual) {
  check_shape(s, x, residual);
  check(s.stride == 1 && !pointwise_shape(s), "conv2d_direct: needs a stride-1 convolution that is not 1x1 unpadded");
  conv2d_stride1_banded(pool, s, x, w, bias, y, residual);
}

void conv2d(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
            const float* residual, ConvWeightCache* cache) {
  check_shape(s, x, residual);
  const int64_t P = s.out_h() * s.out_w(), K = s.Ci * s.k * s.k, in_plane = s.Ci * s.H * s.W;
  const bool pointwise = pointwise_shape(s);
  if (s.stride == 1 && !pointwise) {
    if (conv3x3_choice(s, pool.size()) == Conv3x3Algo::kWinograd) {
      conv2d_winograd(pool, s, x, w, bias, y, residual, cache);
    } else {
      conv2d_stride1_banded(pool, s, x, w, bias, y, residual);
    }
    return;
  }
  const PrepackedA pa = prepack_weights(pool, w, s.Co, K);
  std::vector<KIndex> kidx;
  if (!pointwise) {
    kidx.reserve(K);
    for (int64_t ci = 0; ci < s.Ci; ++ci)
      for (int ky = 0; ky < s.k; ++ky)
        for (int kx = 0; kx < s.k; ++kx) kidx.push_back({ci, ky, kx});
  }
  for (int64_t n = 0; n < s.N; ++n) {
    const float* xn = x + n * in_plane;
    float* yn = y + n * s.Co * P;
    TileEpilogue ep;
    ep.bias_row = bias;
    bool accumulate = false;
    if (residual == y) {
      accumulate = true;  // y already holds the residual: add the convolution onto it
    } else if (residual) {
      ep.residual = residual + n * s.Co * P;
      ep.ldr = P;
    }
    if (pointwise) {
      // A 1x1 convolution is a plain GEMM on the image: B = x[Ci][H*W].
      auto pb = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_rowmajor(d, xn, P, j0, nr, p0, kc); };
      gemm_parallel(pool, s.Co, P, K, pa, pb, yn, P, accumulate, ep);
    } else {
      auto pb = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) {
        pack_im2col_panel(d, s, kidx.data(), xn, j0, nr, p0, kc);
      };
      gemm_parallel(pool, s.Co, P, K, pa, pb, yn, P, accumulate, ep);
    }
  }
}

}  // namespace vtv::cpu
