// The VQGAN f16 decoder (SPEC §1 "Tokens -> image"): codebook lookup of a 14x14 token grid,
// post_quant_conv, the taming-transformers Decoder (conv_in, mid, levels from lowest resolution up,
// norm_out + swish, conv_out), then clamp(-1, 1) and (x+1)/2. Runs a chunk of grids at once.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/weights_view.h"
#include "vtv/config.h"

namespace vtv::model {

class VqganDecoder {
 public:
  VqganDecoder(const ModelConfig& config, const VqganDecoderW& weights);

  // Activation bytes per decoded grid (what run() allocates), for sizing chunks.
  int64_t bytes_per_sample() const;

  // grids: per sample, 196 token ids in raster order, each in [0, n_embed) (argmax output).
  // pixels: [n][3][224][224] in [0, 1].
  void run(ThreadPool& pool, const std::vector<const int32_t*>& grids, float* pixels);

 private:
  void resnet(ThreadPool& pool, const ResnetBlockW& w, int64_t n, int64_t H, int64_t W);
  void attention(ThreadPool& pool, const AttnBlockW& w, int64_t n, int64_t H, int64_t W);
  float* buf(int i) { return bufs_[static_cast<size_t>(i)].data(); }

  const ModelConfig& c_;
  const VqganDecoderW& w_;
  int64_t max_elems_ = 0;        // largest C*H*W of any feature map in the decoder
  int64_t max_attn_elems_ = 0;   // largest C*H*W at an attention block
  // cur_ is the running feature map; the others are scratch. Four full-size maps: x, two conv
  // intermediates and the shortcut.
  std::vector<float> bufs_[4];
  int cur_ = 0;
  std::vector<float> q_, k_, v_, o_;
};

}  // namespace vtv::model
