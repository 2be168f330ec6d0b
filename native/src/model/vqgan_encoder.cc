#include "model/vqgan_encoder.h"

#include <algorithm>
#include <limits>

#include "cpu/conv.h"
#include "cpu/norm.h"
#include "vtv/error.h"

namespace vtv::model {

namespace {

// ImageNet normalisation of the canvases (docs/method.md#canvas), undone by map_pixels.
constexpr float kMean[3] = {float(kImagenetMean[0]), float(kImagenetMean[1]), float(kImagenetMean[2])};
constexpr float kStd[3] = {float(kImagenetStd[0]), float(kImagenetStd[1]), float(kImagenetStd[2])};

// Output side of the taming Downsample: pad one row/column at the end, 3x3 stride 2.
int64_t downsampled(int64_t side) { return (side + 1 - 3) / 2 + 1; }

}  // namespace

VqganEncoder::VqganEncoder(const ModelConfig& config, const VqganEncoderW& weights) : c_(config), w_(weights) {
  // Walk the encoder's shapes once to find the largest feature maps.
  int64_t res = kImage;
  auto see = [&](int64_t channels, int64_t side) { max_elems_ = std::max(max_elems_, channels * side * side); };
  see(3, res);
  see(w_.conv_in.out, res);
  for (int i = 0; i < c_.vq.levels(); ++i) {
    const VqDownLevelW& L = w_.down[static_cast<size_t>(i)];
    for (const auto& b : L.blocks) {
      see(b.in, res);
      see(b.out, res);
    }
    for (const auto& a : L.attn) max_attn_elems_ = std::max<int64_t>(max_attn_elems_, int64_t(a.channels) * res * res);
    if (L.downsample.w) {
      res = downsampled(res);
      see(L.channels, res);
    }
  }
  check(res == kGrid, "vqgan encoder: the down-sampling does not take 224x224 pixels to a 14x14 token grid");
  max_attn_elems_ = std::max<int64_t>(max_attn_elems_, int64_t(w_.mid_attn_1.channels) * res * res);
  see(w_.conv_out.out, res);
  see(w_.quant_conv.out, res);

  const int64_t V = c_.vq.n_embed, E = c_.vq.embed_dim;
  code_norms_.resize(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) {
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += double(w_.codebook[v * E + e]) * w_.codebook[v * E + e];
    code_norms_[static_cast<size_t>(v)] = s;
  }
}

int64_t VqganEncoder::bytes_per_sample() const { return ring_bytes_per_sample(max_elems_, max_attn_elems_); }

void VqganEncoder::quantise(ThreadPool& pool, int64_t n, const float* z, int32_t* tokens) const {
  // argmin_v |z - e_v|^2 = argmin_v (|e_v|^2 - 2 z.e_v), in double so the choice is that of the exact
  // distances of the fp32 latents; the first index wins ties, as torch.argmin.
  const int64_t V = c_.vq.n_embed, E = c_.vq.embed_dim;
  pool.parallel_for(n * kPatches, [&](int64_t begin, int64_t end) {
    std::vector<double> zt(static_cast<size_t>(E));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / kPatches, t = i % kPatches;
      for (int64_t e = 0; e < E; ++e) zt[static_cast<size_t>(e)] = z[(b * E + e) * kPatches + t];
      double best = std::numeric_limits<double>::infinity();
      int32_t arg = 0;
      for (int64_t v = 0; v < V; ++v) {
        const float* code = w_.codebook + v * E;
        double dot = 0;
        for (int64_t e = 0; e < E; ++e) dot += zt[static_cast<size_t>(e)] * code[e];
        const double d = code_norms_[static_cast<size_t>(v)] - 2.0 * dot;
        if (d < best) {
          best = d;
          arg = static_cast<int32_t>(v);
        }
      }
      tokens[i] = arg;
    }
  });
}

void VqganEncoder::run(ThreadPool& pool, const std::vector<const float*>& canvases, int32_t* tokens, float* latents) {
  const int64_t n = static_cast<int64_t>(canvases.size());
  if (n == 0) return;
  ring_.reserve(n * max_elems_);
  const VqganConfig& q = c_.vq;
  const int64_t plane = int64_t(kImage) * kImage;

  // map_pixels: ImageNet-normalised x -> 2 * (x * std + mean) - 1, the VQGAN's [-1, 1] input.
  float* x = ring_.buf(1);
  pool.parallel_for(n * 3, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / 3, ch = bc % 3;
      const float* src = canvases[static_cast<size_t>(b)] + ch * plane;
      float* dst = x + bc * plane;
      for (int64_t i = 0; i < plane; ++i) dst[i] = 2.0f * (src[i] * kStd[ch] + kMean[ch]) - 1.0f;
    }
  });
  int64_t H = kImage, W = kImage;
  cpu::conv2d(pool, conv_shape(n, w_.conv_in, H, W), x, w_.conv_in.w, w_.conv_in.b, ring_.buf(0), nullptr,
              ring_.conv_cache());
  ring_.set_current(0);

  for (int i = 0; i < q.levels(); ++i) {
    const VqDownLevelW& L = w_.down[static_cast<size_t>(i)];
    for (size_t j = 0; j < L.blocks.size(); ++j) {
      ring_.resnet(pool, q, L.blocks[j], n, H, W);
      if (!L.attn.empty()) ring_.attention(pool, q, L.attn[j], n, H, W);
    }
    if (L.downsample.w) {
      const int out = ring_.next();
      cpu::conv2d(pool, downsample_shape(n, L.downsample, H, W), ring_.current_map(), L.downsample.w,
                  L.downsample.b, ring_.buf(out));
      ring_.set_current(out);
      H = downsampled(H);
      W = downsampled(W);
    }
  }

  ring_.resnet(pool, q, w_.mid_block_1, n, H, W);
  ring_.attention(pool, q, w_.mid_attn_1, n, H, W);
  ring_.resnet(pool, q, w_.mid_block_2, n, H, W);

  const int64_t HW = H * W;
  const int t1 = ring_.next(1), t2 = ring_.next(2), t3 = ring_.next(3);
  cpu::group_norm(pool, ring_.current_map(), n, w_.conv_out.in, HW, q.groups, q.eps, w_.norm_out.gamma,
                  w_.norm_out.beta, true, ring_.buf(t1));
  cpu::conv2d(pool, conv_shape(n, w_.conv_out, H, W), ring_.buf(t1), w_.conv_out.w, w_.conv_out.b, ring_.buf(t2), nullptr,
              ring_.conv_cache());
  float* z = latents ? latents : ring_.buf(t3);
  cpu::conv2d(pool, conv_shape(n, w_.quant_conv, H, W), ring_.buf(t2), w_.quant_conv.w, w_.quant_conv.b, z);
  quantise(pool, n, z, tokens);
}

}  // namespace vtv::model
