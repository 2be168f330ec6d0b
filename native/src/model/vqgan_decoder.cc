#include "model/vqgan_decoder.h"

#include <algorithm>
#include <utility>

#include "cpu/conv.h"
#include "cpu/norm.h"
#include "vtv/error.h"

namespace vtv::model {

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

int64_t VqganDecoder::bytes_per_sample() const { return ring_bytes_per_sample(max_elems_, max_attn_elems_); }

void VqganDecoder::run(ThreadPool& pool, const std::vector<const int32_t*>& grids, float* pixels) {
  const int64_t n = static_cast<int64_t>(grids.size());
  if (n == 0) return;
  ring_.reserve(n * max_elems_);
  const int64_t Ce = c_.vq.embed_dim;
  ring_.set_current(0);
  auto buf = [&](int i) { return ring_.buf(i); };

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
  cpu::conv2d(pool, conv_shape(n, w_.conv_in, H, W), buf(2), w_.conv_in.w, w_.conv_in.b, buf(0), nullptr,
              ring_.conv_cache());

  ring_.resnet(pool, c_.vq, w_.mid_block_1, n, H, W);
  ring_.attention(pool, c_.vq, w_.mid_attn_1, n, H, W);
  ring_.resnet(pool, c_.vq, w_.mid_block_2, n, H, W);

  for (int i = c_.vq.levels() - 1; i >= 0; --i) {
    const VqLevelW& L = w_.up[static_cast<size_t>(i)];
    for (size_t j = 0; j < L.blocks.size(); ++j) {
      ring_.resnet(pool, c_.vq, L.blocks[j], n, H, W);
      if (!L.attn.empty()) ring_.attention(pool, c_.vq, L.attn[j], n, H, W);
    }
    if (i != 0) {
      // Nearest x2 upsampling is folded into the conv's input indexing.
      const int out = ring_.next();
      cpu::conv2d(pool, conv_shape(n, L.upsample, H, W, true), ring_.current_map(), L.upsample.w, L.upsample.b,
                  buf(out), nullptr, ring_.conv_cache());
      ring_.set_current(out);
      H *= 2;
      W *= 2;
    }
  }

  const int64_t HW = H * W;
  const int t1 = ring_.next();
  cpu::group_norm(pool, ring_.current_map(), n, w_.conv_out.in, HW, c_.vq.groups, c_.vq.eps,
                  w_.norm_out.gamma, w_.norm_out.beta, true, buf(t1));
  cpu::conv2d(pool, conv_shape(n, w_.conv_out, H, W), buf(t1), w_.conv_out.w, w_.conv_out.b, pixels, nullptr,
              ring_.conv_cache());
  // unmap_pixels: clamp to [-1, 1], then (x + 1) / 2.
  pool.parallel_for(n * 3 * HW, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float v = std::min(1.0f, std::max(-1.0f, pixels[i]));
      pixels[i] = (v + 1.0f) / 2.0f;
    }
  }, 4096);
}

}  // namespace vtv::model
