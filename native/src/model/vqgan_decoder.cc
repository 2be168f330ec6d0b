#include "model/vqgan_decoder.h"

#include <algorithm>
#include <utility>

#include "cpu/attention.h"
#include "cpu/conv.h"
#include "cpu/norm.h"
#include "vtv/error.h"

namespace vtv::model {

namespace {

void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

cpu::Conv2dShape conv_shape(int64_t n, const ConvW& w, int64_t H, int64_t W, bool upsample2x = false) {
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

}  // namespace

VqganDecoder::VqganDecoder(const ModelConfig& config, const VqganDecoderW& weights) : c_(config), w_(weights) {
  // Walk the decoder's shapes once to find the largest feature maps.
  int64_t res = kGrid;
  auto see = [&](int64_t channels, int64_t side) { max_elems_ = std::max(max_elems_, channels * side * side); };
  see(c_.vq.embed_dim, res);
  see(c_.vq.z_channels, res);
  see(w_.conv_in.out, res);
  max_attn_elems_ = std::max<int64_t>(max_attn_elems_, int64_t(w_.mid_attn_1.channels) * res * res);
  for (int i = c_.vq.levels() - 1; i >= 0; --i) {
    const VqLevelW& L = w_.up[static_cast<size_t>(i)];
    for (const auto& b : L.blocks) {
      see(b.in, res);
      see(b.out, res);
    }
    for (const auto& a : L.attn) max_attn_elems_ = std::max<int64_t>(max_attn_elems_, int64_t(a.channels) * res * res);
    if (i != 0) {
      res *= 2;
      see(L.channels, res);
    }
  }
  check(res == kImage, "vqgan: the decoder's upsampling does not take 14x14 tokens to 224x224 pixels");
  see(3, res);
}

int64_t VqganDecoder::bytes_per_sample() const {
  return (4 * max_elems_ + 4 * max_attn_elems_) * int64_t(sizeof(float));
}

void VqganDecoder::resnet(ThreadPool& pool, const ResnetBlockW& w, int64_t n, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  const int t1 = (cur_ + 1) % 4, t2 = (cur_ + 2) % 4, sc = (cur_ + 3) % 4;
  float* x = buf(cur_);
  cpu::group_norm(pool, x, n, w.in, HW, c_.vq.groups, c_.vq.eps, w.norm1.gamma, w.norm1.beta, true, buf(t1));
  cpu::conv2d(pool, conv_shape(n, w.conv1, H, W), buf(t1), w.conv1.w, w.conv1.b, buf(t2));
  cpu::group_norm(pool, buf(t2), n, w.out, HW, c_.vq.groups, c_.vq.eps, w.norm2.gamma, w.norm2.beta, true, buf(t2));
  if (w.nin_shortcut.w) {
    cpu::conv2d(pool, conv_shape(n, w.nin_shortcut, H, W), x, w.nin_shortcut.w, w.nin_shortcut.b, buf(sc));
    cpu::conv2d(pool, conv_shape(n, w.conv2, H, W), buf(t2), w.conv2.w, w.conv2.b, buf(sc), buf(sc));
    cur_ = sc;
  } else {
    // In-place residual: y aliases the residual, never the conv input.
    cpu::conv2d(pool, conv_shape(n, w.conv2, H, W), buf(t2), w.conv2.w, w.conv2.b, x, x);
  }
}

void VqganDecoder::attention(ThreadPool& pool, const AttnBlockW& w, int64_t n, int64_t H, int64_t W) {
  const int64_t HW = H * W, C = w.channels;
  float* x = buf(cur_);
  float* h = buf((cur_ + 1) % 4);
  grow(q_, n * C * HW);
  grow(k_, n * C * HW);
  grow(v_, n * C * HW);
  grow(o_, n * C * HW);
  cpu::group_norm(pool, x, n, C, HW, c_.vq.groups, c_.vq.eps, w.norm.gamma, w.norm.beta, false, h);
  cpu::conv2d(pool, conv_shape(n, w.q, H, W), h, w.q.w, w.q.b, q_.data());
  cpu::conv2d(pool, conv_shape(n, w.k, H, W), h, w.k.w, w.k.b, k_.data());
  cpu::conv2d(pool, conv_shape(n, w.v, H, W), h, w.v.w, w.v.b, v_.data());
  cpu::spatial_attention(pool, q_.data(), k_.data(), v_.data(), n, C, HW, o_.data());
  cpu::conv2d(pool, conv_shape(n, w.proj_out, H, W), o_.data(), w.proj_out.w, w.proj_out.b, x, x);
}

void VqganDecoder::run(ThreadPool& pool, const std::vector<const int32_t*>& grids, float* pixels) {
  const int64_t n = static_cast<int64_t>(grids.size());
  if (n == 0) return;
  for (auto& b : bufs_) grow(b, n * max_elems_);
  const int64_t Ce = c_.vq.embed_dim;
  cur_ = 0;

  // Codebook lookup, laid out NCHW: z[b][c][t] = codebook[grid[b][t]][c].
  float* z = buf(1);
  pool.parallel_for(n, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int32_t* g = grids[static_cast<size_t>(b)];
      for (int t = 0; t < kPatches; ++t) {
        const float* e = w_.codebook + int64_t(g[t]) * Ce;
        for (int64_t ch = 0; ch < Ce; ++ch) z[(b * Ce + ch) * kPatches + t] = e[ch];
      }
    }
  });
  int64_t H = kGrid, W = kGrid;
  cpu::conv2d(pool, conv_shape(n, w_.post_quant_conv, H, W), z, w_.post_quant_conv.w, w_.post_quant_conv.b, buf(2));
  cpu::conv2d(pool, conv_shape(n, w_.conv_in, H, W), buf(2), w_.conv_in.w, w_.conv_in.b, buf(0));

  resnet(pool, w_.mid_block_1, n, H, W);
  attention(pool, w_.mid_attn_1, n, H, W);
  resnet(pool, w_.mid_block_2, n, H, W);

  for (int i = c_.vq.levels() - 1; i >= 0; --i) {
    const VqLevelW& L = w_.up[static_cast<size_t>(i)];
    for (size_t j = 0; j < L.blocks.size(); ++j) {
      resnet(pool, L.blocks[j], n, H, W);
      if (!L.attn.empty()) attention(pool, L.attn[j], n, H, W);
    }
    if (i != 0) {
      // Nearest x2 upsampling is folded into the conv's input indexing.
      const int out = (cur_ + 1) % 4;
      cpu::conv2d(pool, conv_shape(n, L.upsample, H, W, true), buf(cur_), L.upsample.w, L.upsample.b, buf(out));
      cur_ = out;
      H *= 2;
      W *= 2;
    }
  }

  const int64_t HW = H * W;
  const int t1 = (cur_ + 1) % 4;
  cpu::group_norm(pool, buf(cur_), n, w_.conv_out.in, HW, c_.vq.groups, c_.vq.eps,
                  w_.norm_out.gamma, w_.norm_out.beta, true, buf(t1));
  cpu::conv2d(pool, conv_shape(n, w_.conv_out, H, W), buf(t1), w_.conv_out.w, w_.conv_out.b, pixels);
  // unmap_pixels: clamp to [-1, 1], then (x + 1) / 2.
  pool.parallel_for(n * 3 * HW, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float v = std::min(1.0f, std::max(-1.0f, pixels[i]));
      pixels[i] = (v + 1.0f) / 2.0f;
    }
  }, 4096);
}

}  // namespace vtv::model
