// The VQGAN f16 decoder (docs/method.md#vqgan): codebook lookup of a 14x14 token grid,
// post_quant_conv, the taming-transformers Decoder (conv_in, mid, levels from lowest resolution up,
// norm_out + swish, conv_out), then clamp(-1, 1) and (x+1)/2. Runs a chunk of grids at once.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/cpu_model_count.h"
#include "model/vqgan_blocks.h"
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
  const ModelConfig& c_;
  const VqganDecoderW& w_;
  int64_t max_elems_ = 0;        // largest C*H*W of any feature map in the decoder
  int64_t max_attn_elems_ = 0;   // largest C*H*W at an attention block
  // The running map and three scratch maps: x, two conv intermediates and the shortcut.
  FeatureRing ring_;
  CpuModelCount counted_;
};

}  // namespace vtv::model
