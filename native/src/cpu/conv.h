// 2-D convolution (NCHW, fp32) for the VQGAN: 1x1 and 3x3, stride 1 or 2, explicit asymmetric padding,
// and nearest x2 upsampling folded into the input indexing (never materialised).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <unordered_map>

#include "core/thread_pool.h"

namespace vtv::cpu {

struct Conv2dShape {
  int64_t N = 1, Ci = 1, H = 1, W = 1, Co = 1;  // H, W: the stored input size (before upsampling)
  int k = 3, stride = 1;
  int pad_top = 1, pad_left = 1, pad_bottom = 1, pad_right = 1;
  bool upsample2x = false;  // read the input as its nearest x2 upsampling, [2H][2W]
  int64_t in_h() const { return upsample2x ? 2 * H : H; }
  int64_t in_w() const { return upsample2x ? 2 * W : W; }
  int64_t out_h() const { return (in_h() + pad_top + pad_bottom - k) / stride + 1; }
  int64_t out_w() const { return (in_w() + pad_left + pad_right - k) / stride + 1; }
};

// Weights transformed for a convolution kernel, kept across calls: the Winograd U (4x the weights' size)
// of every weight tensor a caller runs through conv2d_winograd, made on first use. For a model whose
// weights stay in place and unchanged while the cache lives (a decoder owns one). Not thread-safe: one
// call at a time.
class ConvWeightCache {
 public:
  // U for w [Co][Ci][3][3] (the layout conv2d_winograd reads).
  const float* winograd(ThreadPool& pool, const float* w, int64_t Co, int64_t Ci);
  int64_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  struct Entry {
    std::unique_ptr<float, Free> data;
    int64_t co = 0, ci = 0;
  };
  std::unordered_map<const float*, Entry> winograd_;
  int64_t bytes_ = 0;
};

// y[N][Co][out_h][out_w] = conv(x[N][Ci][H][W], w[Co][Ci][k][k]) + bias[Co] (+ residual, same shape as y).
// bias and residual may be null; residual must not alias x, may alias y. 3x3 stride-1 convolutions with
// padding 1 go to the direct (implicit GEMM) or the Winograd kernel as conv3x3_choice says; with a cache,
// Winograd reuses the weights it transformed in earlier calls.
void conv2d(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
            const float* residual = nullptr, ConvWeightCache* cache = nullptr);

// The two variants of a 3x3, stride-1, padding-1 convolution.
//  - kDirect: the implicit GEMM of conv.cc (exact products; any stride-1 shape). The reference variant.
//  - kWinograd: Winograd F(4x4, 3x3) (conv_winograd.cc): 4x fewer multiply-adds, a few times the
//    direct conv's rounding error (documented there and measured in cpu_kernels_test.cc).
//  - kAuto: Winograd where it is faster (AVX-512 builds, enough tiles and channels), else direct.
enum class Conv3x3Algo { kAuto, kDirect, kWinograd };
// Process-wide setting; starts as VTV_CONV3X3=auto|direct|winograd from the environment (default auto).
void set_conv3x3_algo(Conv3x3Algo algo);
Conv3x3Algo conv3x3_algo();
// What conv2d runs for shape s on `threads` threads under the current setting (kDirect or kWinograd;
// kDirect for every shape Winograd does not support).
Conv3x3Algo conv3x3_choice(const Conv2dShape& s, int threads);
// Whether the Winograd kernel supports s: 3x3, stride 1, padding 1 on every side (upsampling allowed).
bool winograd_supported(const Conv2dShape& s);

// The variants themselves (same contract as conv2d). conv2d_direct: any stride-1 shape;
// conv2d_winograd: shapes with winograd_supported.
void conv2d_direct(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias,
                   float* y, const float* residual = nullptr);
void conv2d_winograd(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias,
                     float* y, const float* residual = nullptr, ConvWeightCache* cache = nullptr);

}  // namespace vtv::cpu
