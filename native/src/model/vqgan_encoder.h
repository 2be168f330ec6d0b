// The VQGAN f16 encoder (docs/method.md#vqgan): map_pixels of an ImageNet-normalised canvas, the
// taming-transformers Encoder (conv_in, down levels 0..4 with pad-(0,1,0,1) stride-2 Downsample between
// them, mid, norm_out + swish, conv_out), quant_conv, and nearest-code quantisation. It turns a canvas
// into the 14x14 token grid the MAE's logits are trained against, so a search can score samples in
// token space without decoding. Runs a chunk of canvases at once.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/cpu_model_count.h"
#include "model/vqgan_blocks.h"
#include "model/weights_view.h"
#include "vtv/config.h"

namespace vtv::model {

class VqganEncoder {
 public:
  VqganEncoder(const ModelConfig& config, const VqganEncoderW& weights);

  // Activation bytes per encoded canvas (what run() allocates), for sizing chunks.
  int64_t bytes_per_sample() const;

  // canvases: per sample, one ImageNet-normalised [3][224][224] canvas.
  // tokens: [n][196], the nearest code of each latent, raster order.
  // latents (optional): [n][embed_dim][14][14], the quant_conv output before quantisation.
  void run(ThreadPool& pool, const std::vector<const float*>& canvases, int32_t* tokens, float* latents = nullptr);

 private:
  void quantise(ThreadPool& pool, int64_t n, const float* z, int32_t* tokens) const;

  const ModelConfig& c_;
  const VqganEncoderW& w_;
  int64_t max_elems_ = 0;       // largest C*H*W of any feature map in the encoder
  int64_t max_attn_elems_ = 0;  // largest C*H*W at an attention block
  std::vector<double> code_norms_;  // |e|^2 per codebook row
  FeatureRing ring_;
  CpuModelCount counted_;
};

}  // namespace vtv::model
