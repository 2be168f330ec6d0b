#include "model/vqgan_blocks.h"

#include "cpu/attention.h"
#include "cpu/norm.h"

namespace vtv::model {

void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

cpu::Conv2dShape conv_shape(int64_t n, const ConvW& w, int64_t H, int64_t W, bool upsample2x) {
  cpu::Conv2dShape s;
  s.N = n;
  s.Ci = w.in;
  s.Co = w.out;
  s.H = H;
  s.W = W;
  s.k = w.k;
  s.stride = 1;
  const int pad = w.k / 2;  // 3x3 convs pad 1, 1x1 convs pad 0
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = pad;
  s.upsample2x = upsample2x;
  return s;
}

cpu::Conv2dShape downsample_shape(int64_t n, const ConvW& w, int64_t H, int64_t W) {
  cpu::Conv2dShape s = conv_shape(n, w, H, W);
  s.stride = 2;
  s.pad_top = s.pad_left = 0;
  s.pad_bottom = s.pad_right = 1;
  return s;
}

int64_t ring_bytes_per_sample(int64_t max_elems, int64_t max_attn_elems) {
  return (4 * max_elems + 4 * max_attn_elems) * int64_t(sizeof(float));
}

void FeatureRing::reserve(int64_t floats) {
  for (auto& b : bufs_) grow(b, floats);
}

void FeatureRing::resnet(ThreadPool& pool, const VqganConfig& q, const ResnetBlockW& w, int64_t n, int64_t H,
                         int64_t W) {
  const int64_t HW = H * W;
  const int t1 = next(1), t2 = next(2), sc = next(3);
  float* x = buf(cur_);
  cpu::group_norm(pool, x, n, w.in, HW, q.groups, q.eps, w.norm1.gamma, w.norm1.beta, true, buf(t1));
  cpu::conv2d(pool, conv_shape(n, w.conv1, H, W), buf(t1), w.conv1.w, w.conv1.b, buf(t2), nullptr, conv_cache());
  cpu::group_norm(pool, buf(t2), n, w.out, HW, q.groups, q.eps, w.norm2.gamma, w.norm2.beta, true, buf(t2));
  if (w.nin_shortcut.w) {
    cpu::conv2d(pool, conv_shape(n, w.nin_shortcut, H, W), x, w.nin_shortcut.w, w.nin_shortcut.b, buf(sc));
    cpu::conv2d(pool, conv_shape(n, w.conv2, H, W), buf(t2), w.conv2.w, w.conv2.b, buf(sc), buf(sc), conv_cache());
    cur_ = sc;
  } else {
    // In-place residual: y aliases the residual, never the conv input.
    cpu::conv2d(pool, conv_shape(n, w.conv2, H, W), buf(t2), w.conv2.w, w.conv2.b, x, x, conv_cache());
  }
}

void FeatureRing::attention(ThreadPool& pool, const VqganConfig& q, const AttnBlockW& w, int64_t n, int64_t H,
                            int64_t W) {
  const int64_t HW = H * W, C = w.channels;
  float* x = buf(cur_);
  float* h = buf(next(1));
  grow(q_, n * C * HW);
  grow(k_, n * C * HW);
  grow(v_, n * C * HW);
  grow(o_, n * C * HW);
  cpu::group_norm(pool, x, n, C, HW, q.groups, q.eps, w.norm.gamma, w.norm.beta, false, h);
  cpu::conv2d(pool, conv_shape(n, w.q, H, W), h, w.q.w, w.q.b, q_.data());
  cpu::conv2d(pool, conv_shape(n, w.k, H, W), h, w.k.w, w.k.b, k_.data());
  cpu::conv2d(pool, conv_shape(n, w.v, H, W), h, w.v.w, w.v.b, v_.data());
  cpu::spatial_attention(pool, q_.data(), k_.data(), v_.data(), n, C, HW, o_.data());
  cpu::conv2d(pool, conv_shape(n, w.proj_out, H, W), o_.data(), w.proj_out.w, w.proj_out.b, x, x);
}

}  // namespace vtv::model
