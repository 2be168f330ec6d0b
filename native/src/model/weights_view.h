// Every tensor the forward reads, bound by its checkpoint name (docs/method.md#model) with its shape checked once,
// at engine construction, so a wrong or incomplete file fails before any work with a message naming
// the key. The pointers are fp32 and live as long as the Weights object.
#pragma once
#include <memory>
#include <vector>

#include "vtv/config.h"
#include "vtv/weights.h"

namespace vtv::model {

struct LinearW {
  const float* w = nullptr;  // [out][in]
  const float* b = nullptr;  // [out]
};

struct NormW {
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

struct TransformerBlockW {
  NormW norm1, norm2;
  LinearW qkv, proj, fc1, fc2;
};

struct MaeW {
  const float* cls_token = nullptr;          // [enc_dim]
  const float* pos_embed = nullptr;          // [197][enc_dim]
  const float* patch_w = nullptr;            // [enc_dim][3][16][16], i.e. a Linear over (c, y, x) patch vectors
  const float* patch_b = nullptr;            // [enc_dim]
  std::vector<TransformerBlockW> blocks;     // enc_depth
  NormW norm;
  LinearW decoder_embed;                     // [dec_dim][enc_dim]
  const float* mask_token = nullptr;         // [dec_dim]
  const float* decoder_pos_embed = nullptr;  // [197][dec_dim]
  std::vector<TransformerBlockW> decoder_blocks;  // dec_depth
  NormW decoder_norm;
  LinearW decoder_pred;                      // [vocab][dec_dim]
};

struct ConvW {
  const float* w = nullptr;  // [out][in][k][k]
  const float* b = nullptr;  // [out]
  int in = 0, out = 0, k = 1;
};

struct ResnetBlockW {
  NormW norm1, norm2;
  ConvW conv1, conv2;
  ConvW nin_shortcut;  // w == nullptr when in == out
  int in = 0, out = 0;
};

struct AttnBlockW {
  NormW norm;
  ConvW q, k, v, proj_out;
  int channels = 0;
};

struct VqLevelW {
  std::vector<ResnetBlockW> blocks;  // num_res_blocks + 1
  std::vector<AttnBlockW> attn;      // one per block at the lowest-resolution level, else empty
  ConvW upsample;                    // w == nullptr at level 0
  int channels = 0;
};

struct VqganDecoderW {
  const float* codebook = nullptr;  // [n_embed][embed_dim]
  ConvW post_quant_conv;            // 1x1 embed_dim -> z_channels
  ConvW conv_in;                    // 3x3 z_channels -> ch*ch_mult[last]
  ResnetBlockW mid_block_1, mid_block_2;
  AttnBlockW mid_attn_1;
  std::vector<VqLevelW> up;         // indexed by level 0..levels-1; the forward runs them from last to 0
  NormW norm_out;
  ConvW conv_out;                   // 3x3 ch*ch_mult[0] -> 3
};

// One down-sampling level of the VQGAN encoder (taming Encoder.down[i]).
struct VqDownLevelW {
  std::vector<ResnetBlockW> blocks;  // num_res_blocks (the encoder has no extra block, unlike the decoder)
  std::vector<AttnBlockW> attn;      // one per block at the lowest-resolution level, else empty
  ConvW downsample;                  // pad (0,1,0,1) + 3x3 stride 2; w == nullptr at the last level
  int channels = 0;                  // output channels of the level
};

struct VqganEncoderW {
  ConvW conv_in;                    // 3x3 3 -> ch
  std::vector<VqDownLevelW> down;   // levels 0..levels-1, run in that order
  ResnetBlockW mid_block_1, mid_block_2;
  AttnBlockW mid_attn_1;
  NormW norm_out;
  ConvW conv_out;                   // 3x3 ch*ch_mult[last] -> z_channels (double_z false)
  ConvW quant_conv;                 // 1x1 z_channels -> embed_dim
  const float* codebook = nullptr;  // [n_embed][embed_dim]
};

// Binds the MAE (398 tensors for ViT-L). Throws naming the first missing or mis-shaped key.
MaeW bind_mae(Weights& weights, const ModelConfig& config);

// Binds the VQGAN codebook, post_quant_conv and decoder (keys with or without the "vae." prefix).
VqganDecoderW bind_vqgan_decoder(Weights& weights, const ModelConfig& config);

// Binds the VQGAN encoder, quant_conv and codebook (encoder.* / quant_conv.*, with or without "vae.").
// Optional in weights files: only engines built with need_vqgan_encoder bind it.
VqganEncoderW bind_vqgan_encoder(Weights& weights, const ModelConfig& config);

}  // namespace vtv::model
