// VqganDeviceBlocks: the VQGAN's convolutions and blocks as enqueued work (see vqgan_device_blocks.h).
#include "cuda/vqgan_device_blocks.h"

#include "vtv/error.h"

namespace vtv::cuda {

GroupNormIn VqganDeviceBlocks::gn(const DevNorm& w, const double* s, bool swish) const {
  GroupNormIn g;
  g.stats = s;
  g.gamma = w.gamma.get();
  g.beta = w.beta.get();
  g.groups = c.vq.groups;
  g.eps = c.vq.eps;
  g.swish = swish;
  return g;
}

void VqganDeviceBlocks::conv(const DevConv& w, const float* x, int64_t n, Resample r, float* y, const float* residual,
                             const GroupNormIn& norm, double* stats_out) {
  ConvArgs a;
  a.x = x;
  a.N = n;
  a.Ci = w.in;
  a.H = H;
  a.W = W;
  a.upsample2x = r == Resample::Up2x;
  a.downsample2x = r == Resample::Down2x;
  a.Co = w.out;
  a.k = w.k;
  if (precision == Precision::F32) a.w_f32 = w.w32.get();
  else a.w_bf16 = w.w16.get();
  if (precision == Precision::BF16) {
    a.w_bf16_taps = w.w16_taps.size() ? w.w16_taps.get() : nullptr;
    a.workspace = workspace.get();
    a.workspace_bytes = workspace.size() * sizeof(uint16_t);
  }
  a.bias = w.b.get();
  a.residual = residual;
  a.y = y;
  a.norm = norm;
  a.stats_out = stats_out;
  a.stats_groups = c.vq.groups;
  conv2d(a, stream);
}

void VqganDeviceBlocks::conv_nhwc(const DevConv& w, const uint16_t* x, int64_t n, bool up, uint16_t* y,
                                  const uint16_t* residual, double* stats_out) {
  ConvNhwcArgs a;
  a.x = x;
  a.N = n;
  a.Ci = w.in;
  a.H = H;
  a.W = W;
  a.upsample2x = up;
  a.Co = w.out;
  a.k = w.k;
  a.w_taps = w.k == 3 ? w.w16_taps.get() : w.w16.get();  // a 1x1 conv's [Co][Ci] is already tap-major
  a.bias = w.b.get();
  a.residual = residual;
  a.y = y;
  a.stats_out = stats_out;
  a.stats_groups = c.vq.groups;
  conv2d_nhwc(a, stream);
}

const uint16_t* VqganDeviceBlocks::normalise(int i, const DevNorm& w, bool swish, int C, int64_t n) {
  group_norm_nhwc(map(i), n, C, int64_t(H) * W, gn(w, st(i), swish), normed16.get(), stream);
  return normed16.get();
}

void VqganDeviceBlocks::resnet(const DevResnet& w, int64_t n) {
  const int t2 = (cur + 1) % 3, sc = (cur + 2) % 3;
  if (nhwc) {
    conv_nhwc(w.conv1, normalise(cur, w.norm1, true, w.conv1.in, n), n, false, map(t2), nullptr, st(t2));
    const int out = w.has_nin ? sc : cur;
    if (w.has_nin) conv_nhwc(w.nin, map(cur), n, false, map(sc), nullptr, nullptr);
    conv_nhwc(w.conv2, normalise(t2, w.norm2, true, w.conv2.in, n), n, false, map(out), map(out), st(out));
    cur = out;
    return;
  }
  conv(w.conv1, buf(cur), n, Resample::None, buf(t2), nullptr, gn(w.norm1, st(cur), true), st(t2));
  if (w.has_nin) {
    conv(w.nin, buf(cur), n, Resample::None, buf(sc), nullptr, GroupNormIn{}, nullptr);
    conv(w.conv2, buf(t2), n, Resample::None, buf(sc), buf(sc), gn(w.norm2, st(t2), true), st(sc));
    cur = sc;
  } else {
    conv(w.conv2, buf(t2), n, Resample::None, buf(cur), buf(cur), gn(w.norm2, st(t2), true), st(cur));
  }
}

void VqganDeviceBlocks::attention(const DevAttn& w, int64_t n) {
  const int C = w.channels;
  if (nhwc) {
    conv_nhwc(w.qkv, normalise(cur, w.norm, false, C, n), n, false, qkv16.get(), nullptr, nullptr);
    spatial_attention_nhwc(qkv16.get(), n, C, H * W, att16.get(), stream);
    conv_nhwc(w.proj, att16.get(), n, false, map(cur), map(cur), st(cur));
    return;
  }
  conv(w.qkv, buf(cur), n, Resample::None, qkv.get(), nullptr, gn(w.norm, st(cur), false), nullptr);
  spatial_attention(qkv.get(), n, C, H * W, att.get(), stream);
  conv(w.proj, att.get(), n, Resample::None, buf(cur), buf(cur), GroupNormIn{}, st(cur));
}

void VqganDeviceBlocks::resample(const DevConv& w, int64_t n, Resample r) {
  const int nxt = (cur + 1) % 3;
  if (nhwc) {
    check(r != Resample::Down2x, "VqganDeviceBlocks: the NHWC layout has no Down2x");
    conv_nhwc(w, map(cur), n, r == Resample::Up2x, map(nxt), nullptr, st(nxt));
  } else {
    conv(w, buf(cur), n, r, buf(nxt), nullptr, GroupNormIn{}, st(nxt));
  }
  cur = nxt;
  if (r == Resample::Up2x) {
    H *= 2;
    W *= 2;
  } else if (r == Resample::Down2x) {
    H = downsampled_side(H);
    W = downsampled_side(W);
  }
}

void VqganDeviceBlocks::reserve(int64_t n) {
  const size_t N = static_cast<size_t>(n);
  for (int i = 0; i < 3; ++i) stats[i].resize(N * static_cast<size_t>(c.vq.groups) * 2);
  if (nhwc) {
    for (int i = 0; i < 3; ++i) map16[i].resize(N * static_cast<size_t>(max_elems));
    normed16.resize(N * static_cast<size_t>(max_elems));
    qkv16.resize(N * 3 * static_cast<size_t>(max_attn));
    att16.resize(N * static_cast<size_t>(max_attn));
    return;
  }
  for (int i = 0; i < 3; ++i) ring[i].resize(N * static_cast<size_t>(max_elems));
  qkv.resize(N * 3 * static_cast<size_t>(max_attn));
  att.resize(N * static_cast<size_t>(max_attn));
  if (precision == Precision::BF16) workspace.resize(N * static_cast<size_t>(max_elems));
}

int64_t VqganDeviceBlocks::bytes_per_sample() const {
  const int64_t st_bytes = 3 * int64_t(c.vq.groups) * 2 * int64_t(sizeof(double));
  if (nhwc) return (4 * max_elems + 4 * max_attn) * int64_t(sizeof(uint16_t)) + st_bytes;
  return (3 * max_elems + 4 * max_attn) * int64_t(sizeof(float)) + st_bytes +
         (precision == Precision::BF16 ? max_elems * int64_t(sizeof(uint16_t)) : 0);
}

}  // namespace vtv::cuda
