// 2-D convolution (NCHW, fp32) for the VQGAN: 1x1 and 3x3, stride 1 or 2, explicit asymmetric padding,
// and nearest x2 upsampling folded into the input indexing (never materialised).
#pragma once
#include <cstdint>

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

// y[N][Co][out_h][out_w] = conv(x[N][Ci][H][W], w[Co][Ci][k][k]) + bias[Co] (+ residual, same shape as y).
// bias and residual may be null; residual must not alias x, may alias y.
void conv2d(ThreadPool& pool, const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
            const float* residual = nullptr);

}  // namespace vtv::cpu
