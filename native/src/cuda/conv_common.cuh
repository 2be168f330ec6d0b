// What the two implicit-GEMM convolution kernels (conv_f32.cu, conv_bf16.cu) share: the GEMM view of a
// convolution, the gather of one input value (upsampling, zero padding and the GroupNorm prologue
// folded in), the epilogue of one output value, and the argument checks.
//
// GEMM view, per sample n: C[co][p] = sum_k W[co][k] * B[k][p] with k = (ci, ky, kx) in the weight's own
// order (W is [Co][Ci][KS][KS] = [Co][K] row-major) and p = oy * Wo + ox an output pixel;
// B[k][p] = prologue(x[n][ci][iy >> up][ix >> up]) for iy = oy + ky - KS/2, ix = ox + kx - KS/2 inside
// the (upsampled) input, else 0. The encoder's Downsample (DOWN) instead reads iy = 2 * oy + ky,
// ix = 2 * ox + kx, zero past the bottom/right edge (pad (0, 1, 0, 1), stride 2). The grid is (pixel tiles of one sample, Co tiles, samples), so a block
// never mixes samples and its GroupNorm sums belong to one sample.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <string>

#include "cuda/group_norm.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

constexpr int kConvMaxCi = 512;  // the prologue's per-channel tables live in static shared memory

struct ConvParams {
  const float* x;
  int Ci, H, W, up;  // stored input; up = 1 reads it as its nearest x2 upsampling
  int Ho, Wo, Co, K;
  const float* bias;
  const float* residual;
  float* y;
  GroupNormIn norm;
  double* stats_out;
  int stats_groups;
  // The NHWC layout (conv2d_nhwc): y16 set means the output is bf16 NHWC [N][Ho][Wo][Co] (y unused) and
  // res16 (nullable) its residual in the same layout; the kernels that read the bf16 NHWC input
  // (conv_bf16_nhwc.cu, conv_bf16_wgmma.cu) then get x from their own argument, not from x here.
  uint16_t* y16;
  const uint16_t* res16;
};

inline ConvParams conv_params(const ConvArgs& a) {
  ConvParams p;
  p.x = a.x;
  p.Ci = a.Ci;
  p.H = a.H;
  p.W = a.W;
  p.up = a.upsample2x ? 1 : 0;
  p.Ho = a.downsample2x ? downsampled_side(a.H) : a.H << p.up;
  p.Wo = a.downsample2x ? downsampled_side(a.W) : a.W << p.up;
  p.Co = a.Co;
  p.K = a.Ci * a.k * a.k;
  p.bias = a.bias;
  p.residual = a.residual;
  p.y = a.y;
  p.norm = a.norm;
  p.stats_out = a.stats_out;
  p.stats_groups = a.stats_groups;
  p.y16 = nullptr;
  p.res16 = nullptr;
  return p;
}

// The same view of an NHWC call (conv2d_nhwc): no prologue, bf16 NHWC output.
inline ConvParams conv_params(const ConvNhwcArgs& a) {
  ConvParams p{};
  p.Ci = a.Ci;
  p.H = a.H;
  p.W = a.W;
  p.up = a.upsample2x ? 1 : 0;
  p.Ho = a.H << p.up;
  p.Wo = a.W << p.up;
  p.Co = a.Co;
  p.K = a.Ci * a.k * a.k;
  p.bias = a.bias;
  p.stats_out = a.stats_out;
  p.stats_groups = a.stats_groups;
  p.y16 = a.y;
  p.res16 = a.residual;
  return p;
}

// Where one thread's 8-wide k chunk of an NHWC implicit GEMM reads, k tile after k tile: k = (ky, kx, ci)
// for a 3x3 conv (K = 9 Ci), a 1x1 conv (K == Ci) has the one tap (0, 0). Ci % 8 == 0, so a chunk lies
// inside one tap. The kernels load their k tiles in order (0, 1, 2, ...), so the cursor starts at the
// chunk's offset in tile 0 and steps one tile at a time: the division by Ci happens once per thread, not
// once per tile (it dominated the load's instruction count), and a step crosses at most one tap when
// Ci >= the tile width (the model's convs), a few for the tiny model's 8 and 16 channels.
struct NhwcTapCursor {
  int ci;      // the chunk's input channel
  int dy, dx;  // its tap's offset from the output pixel, each in -1 .. 1

  __device__ __forceinline__ void start(const ConvParams& p, int k0) {
    if (p.K == p.Ci) {
      ci = k0;
      dy = dx = 0;
    } else {
      const int tap = k0 / p.Ci;
      ci = k0 - tap * p.Ci;
      dy = tap / 3 - 1;
      dx = tap - (dy + 1) * 3 - 1;
    }
  }
  // To the same chunk of the next k tile (`step` = the tile width); past K the position is meaningless
  // (the loads are zero-filled there).
  __device__ __forceinline__ void advance(const ConvParams& p, int step) {
    ci += step;
    while (ci >= p.Ci) {
      ci -= p.Ci;
      if (++dx == 2) {
        dx = -1;
        ++dy;
      }
    }
  }
};

// Where pixel p of the output sits, fixed for a thread across the whole K loop.
struct ConvPixel {
  int oy, ox;
  bool valid;
};

__device__ __forceinline__ ConvPixel conv_pixel(const ConvParams& p, int pix) {
  ConvPixel q;
  q.valid = pix < p.Ho * p.Wo;
  q.oy = q.valid ? pix / p.Wo : 0;
  q.ox = q.valid ? pix - q.oy * p.Wo : 0;
  return q;
}

// B[k][p] for sample base xn (= x + n*Ci*H*W); sc/sh: the prologue tables (unused without norm).
// DOWN (KS == 3 only): the stride-2 Downsample indexing (up is 0 then).
template <int KS, bool DOWN = false>
__device__ __forceinline__ float conv_gather(const ConvParams& p, const float* __restrict__ xn, const ConvPixel& px,
                                             int k, const float* sc, const float* sh) {
  if (!px.valid || k >= p.K) return 0.0f;
  int ci, iy, ix;
  if (KS == 1) {
    ci = k;
    iy = px.oy;
    ix = px.ox;
  } else if (DOWN) {
    ci = k / (KS * KS);
    const int r = k - ci * (KS * KS);
    const int ky = r / KS, kx = r - ky * KS;
    iy = 2 * px.oy + ky;  // never negative: no padding before the top/left edge
    ix = 2 * px.ox + kx;
    if (iy >= p.H || ix >= p.W) return 0.0f;  // the bottom/right pad: zero after the prologue
  } else {
    ci = k / (KS * KS);
    const int r = k - ci * (KS * KS);
    const int ky = r / KS, kx = r - ky * KS;
    iy = px.oy + ky - KS / 2;
    ix = px.ox + kx - KS / 2;
    if (iy < 0 || iy >= p.Ho || ix < 0 || ix >= p.Wo) return 0.0f;  // padding: zero after the prologue
  }
  const float v = __ldg(xn + (int64_t(ci) * p.H + (iy >> p.up)) * p.W + (ix >> p.up));
  return p.norm.stats ? group_norm_value(v, sc[ci], sh[ci], p.norm.swish) : v;
}

// The start of a conv block (BM output channels of sample n, THREADS threads): the GroupNorm prologue
// tables sc/sh when norm is set, zeroed output-row statistics when stats_out is set, then a barrier.
template <int BM, int THREADS>
__device__ __forceinline__ void conv_block_begin(const ConvParams& p, int64_t n, float* sc, float* sh, double* row_sum,
                                                 double* row_sq) {
  if (p.norm.stats) group_norm_tables(p.norm, n, p.Ci, int64_t(p.H) * p.W, sc, sh);
  if (p.stats_out) {
    for (int r = threadIdx.x; r < BM; r += THREADS) row_sum[r] = row_sq[r] = 0.0;
  }
  __syncthreads();
}

// One thread's partial sums s, q of an output row into the block's row statistics: the LANES lanes
// that share the row (LANES a power of two, lanes differing in the low bits only) fold their sums by
// shuffles and the first of them (`first`) adds them.
template <int LANES>
__device__ __forceinline__ void conv_row_stats_add(double s, double q, bool first, double* row_sum, double* row_sq) {
#pragma unroll
  for (int m = 1; m < LANES; m <<= 1) {
    s += __shfl_xor_sync(0xFFFFFFFFu, s, m);
    q += __shfl_xor_sync(0xFFFFFFFFu, q, m);
  }
  if (first) {
    atomicAdd(row_sum, s);
    atomicAdd(row_sq, q);
  }
}

// The end of a conv block: its row statistics (BM channels from c0) into stats_out, when set.
template <int BM>
__device__ __forceinline__ void conv_block_end(const ConvParams& p, int64_t n, int c0, const double* row_sum,
                                               const double* row_sq) {
  if (p.stats_out) {
    __syncthreads();
    group_norm_flush(row_sum, row_sq, BM, c0, p.Co, p.stats_groups, n, p.stats_out);
  }
}

// Output value of (n, co, pix): + bias, + residual, stored; returns it for the statistics.
__device__ __forceinline__ float conv_store(const ConvParams& p, int64_t n, int co, int pix, float acc) {
  const int64_t off = (n * p.Co + co) * int64_t(p.Ho) * p.Wo + pix;
  float v = acc + p.bias[co];
  if (p.residual) v += p.residual[off];
  p.y[off] = v;
  return v;
}

// Output value of (n, co, pix) in the NHWC layout: + bias, + residual (bf16), rounded to bf16 and
// stored; returns the stored value, for the statistics (the next GroupNorm normalises what is stored).
__device__ __forceinline__ float conv_store_nhwc(const ConvParams& p, int64_t n, int co, int pix, float acc) {
  const int64_t off = (n * p.Ho * p.Wo + pix) * p.Co + co;
  float v = acc + p.bias[co];
  if (p.res16) v += __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p.res16)[off]);
  const __nv_bfloat16 r = __float2bfloat16_rn(v);
  reinterpret_cast<__nv_bfloat16*>(p.y16)[off] = r;
  return __bfloat162float(r);
}

// Either layout's store: the kernels that serve both call this in their epilogue.
__device__ __forceinline__ float conv_store_any(const ConvParams& p, int64_t n, int co, int pix, float acc) {
  return p.y16 ? conv_store_nhwc(p, n, co, pix, acc) : conv_store(p, n, co, pix, acc);
}

inline void validate_conv(const ConvArgs& a, const char* name) {
  const std::string n(name);
  check(a.N >= 0 && a.Ci > 0 && a.H > 0 && a.W > 0 && a.Co > 0,
        n + ": sizes must be positive (N " + std::to_string(a.N) + ", Ci " + std::to_string(a.Ci) + ", H " +
            std::to_string(a.H) + ", W " + std::to_string(a.W) + ", Co " + std::to_string(a.Co) + ")");
  check(a.k == 1 || a.k == 3, n + ": kernel size must be 1 or 3, got " + std::to_string(a.k));
  check(a.Ci % 8 == 0, n + ": Ci must be a multiple of 8 (16-byte weight rows), got " + std::to_string(a.Ci));
  check(a.Ci <= kConvMaxCi, n + ": Ci must be at most " + std::to_string(kConvMaxCi) + ", got " + std::to_string(a.Ci));
  check(a.x != nullptr && a.y != nullptr && a.bias != nullptr, n + ": x, y and bias must be set");
  check(a.x != a.y, n + ": x must not alias y");
  check(a.residual != a.x || a.residual == nullptr, n + ": residual must not alias x");
  if (a.downsample2x) {
    check(!a.upsample2x, n + ": downsample2x and upsample2x exclude each other");
    check(a.k == 3, n + ": downsample2x needs a 3x3 kernel, got k " + std::to_string(a.k));
    check(a.H >= 2 && a.W >= 2, n + ": downsample2x needs an input of at least 2x2, got " + std::to_string(a.H) + "x" +
                                    std::to_string(a.W));
  }
  const int64_t ho = int64_t(a.H) << (a.upsample2x ? 1 : 0), wo = int64_t(a.W) << (a.upsample2x ? 1 : 0);
  check(ho * wo < (int64_t(1) << 30), n + ": output map too large");
  if (a.norm.stats) {
    check(a.norm.gamma && a.norm.beta, n + ": the GroupNorm prologue needs gamma and beta");
    check(a.norm.groups > 0 && a.Ci % a.norm.groups == 0,
          n + ": Ci " + std::to_string(a.Ci) + " is not a multiple of the prologue's groups " + std::to_string(a.norm.groups));
  }
  if (a.stats_out) {
    check(a.stats_groups > 0 && a.Co % a.stats_groups == 0,
          n + ": Co " + std::to_string(a.Co) + " is not a multiple of stats_groups " + std::to_string(a.stats_groups));
  }
}

}  // namespace vtv::cuda
