#include "model/weights_view.h"

#include <utility>

#include "vtv/error.h"

namespace vtv::model {

namespace {

using Shape = std::vector<int64_t>;

NormW bind_norm(Weights& w, const std::string& prefix, int64_t c) {
  return {w.f32(prefix + ".weight", {c}), w.f32(prefix + ".bias", {c})};
}

LinearW bind_linear(Weights& w, const std::string& prefix, int64_t out, int64_t in) {
  return {w.f32(prefix + ".weight", {out, in}), w.f32(prefix + ".bias", {out})};
}

TransformerBlockW bind_block(Weights& w, const std::string& prefix, int64_t dim, int64_t hidden) {
  TransformerBlockW b;
  b.norm1 = bind_norm(w, prefix + ".norm1", dim);
  b.qkv = bind_linear(w, prefix + ".attn.qkv", 3 * dim, dim);
  b.proj = bind_linear(w, prefix + ".attn.proj", dim, dim);
  b.norm2 = bind_norm(w, prefix + ".norm2", dim);
  b.fc1 = bind_linear(w, prefix + ".mlp.fc1", hidden, dim);
  b.fc2 = bind_linear(w, prefix + ".mlp.fc2", dim, hidden);
  return b;
}

// VQGAN keys are looked up under "vae." first (the MAE .pth kept its vae submodule), then bare
// (the VQGAN last.ckpt); a missing key names both spellings and how to do without it (`remedy`).
class VqBinder {
 public:
  VqBinder(Weights& w, std::string remedy) : w_(w), remedy_(std::move(remedy)) {}

  const float* f32(const std::string& key, const Shape& shape) {
    std::string k = w_.vq_key(key);
    if (!w_.has(k)) {
      std::string files;
      for (size_t i = 0; i < w_.files().size(); ++i) files += (i ? ", " : "") + w_.files()[i];
      throw Error("weights: no VQGAN tensor '" + key + "' (nor 'vae." + key + "') in " + files +
                  " (" + remedy_ + ")");
    }
    return w_.f32(k, shape);
  }
  NormW norm(const std::string& prefix, int64_t c) { return {f32(prefix + ".weight", {c}), f32(prefix + ".bias", {c})}; }
  ConvW conv(const std::string& prefix, int out, int in, int k) {
    ConvW c;
    c.w = f32(prefix + ".weight", {out, in, k, k});
    c.b = f32(prefix + ".bias", {out});
    c.in = in;
    c.out = out;
    c.k = k;
    return c;
  }
  ResnetBlockW resnet(const std::string& prefix, int in, int out) {
    ResnetBlockW r;
    r.in = in;
    r.out = out;
    r.norm1 = norm(prefix + ".norm1", in);
    r.conv1 = conv(prefix + ".conv1", out, in, 3);
    r.norm2 = norm(prefix + ".norm2", out);
    r.conv2 = conv(prefix + ".conv2", out, out, 3);
    if (in != out) r.nin_shortcut = conv(prefix + ".nin_shortcut", out, in, 1);
    return r;
  }
  AttnBlockW attn(const std::string& prefix, int c) {
    AttnBlockW a;
    a.channels = c;
    a.norm = norm(prefix + ".norm", c);
    a.q = conv(prefix + ".q", c, c, 1);
    a.k = conv(prefix + ".k", c, c, 1);
    a.v = conv(prefix + ".v", c, c, 1);
    a.proj_out = conv(prefix + ".proj_out", c, c, 1);
    return a;
  }

 private:
  Weights& w_;
  std::string remedy_;
};

}  // namespace

MaeW bind_mae(Weights& w, const ModelConfig& c) {
  const int64_t E = c.enc_dim, D = c.dec_dim, T = kPatches + 1;
  MaeW m;
  m.cls_token = w.f32("cls_token", {1, 1, E});
  m.pos_embed = w.f32("pos_embed", {1, T, E});
  m.patch_w = w.f32("patch_embed.proj.weight", {E, 3, kPatch, kPatch});
  m.patch_b = w.f32("patch_embed.proj.bias", {E});
  for (int l = 0; l < c.enc_depth; ++l) {
    m.blocks.push_back(bind_block(w, "blocks." + std::to_string(l), E, E * c.mlp_ratio));
  }
  m.norm = bind_norm(w, "norm", E);
  m.decoder_embed = bind_linear(w, "decoder_embed", D, E);
  m.mask_token = w.f32("mask_token", {1, 1, D});
  m.decoder_pos_embed = w.f32("decoder_pos_embed", {1, T, D});
  for (int l = 0; l < c.dec_depth; ++l) {
    m.decoder_blocks.push_back(bind_block(w, "decoder_blocks." + std::to_string(l), D, D * c.mlp_ratio));
  }
  m.decoder_norm = bind_norm(w, "decoder_norm", D);
  m.decoder_pred = bind_linear(w, "decoder_pred", c.vocab(), D);
  return m;
}

VqganDecoderW bind_vqgan_decoder(Weights& weights, const ModelConfig& c) {
  const VqganConfig& q = c.vq;
  VqBinder b(weights, "pass the VQGAN last.ckpt converted to safetensors, or construct the engine with need_vqgan=false");
  VqganDecoderW v;
  v.codebook = b.f32("quantize.embedding.weight", {q.n_embed, q.embed_dim});
  v.post_quant_conv = b.conv("post_quant_conv", q.z_channels, q.embed_dim, 1);
  const int levels = q.levels();
  int block_in = q.ch * q.ch_mult[static_cast<size_t>(levels - 1)];
  v.conv_in = b.conv("decoder.conv_in", block_in, q.z_channels, 3);
  v.mid_block_1 = b.resnet("decoder.mid.block_1", block_in, block_in);
  v.mid_attn_1 = b.attn("decoder.mid.attn_1", block_in);
  v.mid_block_2 = b.resnet("decoder.mid.block_2", block_in, block_in);
  v.up.resize(static_cast<size_t>(levels));
  for (int i = levels - 1; i >= 0; --i) {
    VqLevelW& L = v.up[static_cast<size_t>(i)];
    const std::string p = "decoder.up." + std::to_string(i);
    const int block_out = q.ch * q.ch_mult[static_cast<size_t>(i)];
    for (int j = 0; j <= q.num_res_blocks; ++j) {
      L.blocks.push_back(b.resnet(p + ".block." + std::to_string(j), block_in, block_out));
      block_in = block_out;
      // attn_resolutions [16] with resolution 256: attention only at the lowest-resolution level.
      if (i == levels - 1) L.attn.push_back(b.attn(p + ".attn." + std::to_string(j), block_in));
    }
    L.channels = block_in;
    if (i != 0) L.upsample = b.conv(p + ".upsample.conv", block_in, block_in, 3);
  }
  v.norm_out = b.norm("decoder.norm_out", block_in);
  v.conv_out = b.conv("decoder.conv_out", 3, block_in, 3);
  return v;
}

VqganEncoderW bind_vqgan_encoder(Weights& weights, const ModelConfig& c) {
  const VqganConfig& q = c.vq;
  VqBinder b(weights,
             "pass a file with the VQGAN encoder, e.g. the VQGAN last.ckpt converted to safetensors, or construct "
             "the engine with need_vqgan_encoder=false");
  VqganEncoderW v;
  const int levels = q.levels();
  v.conv_in = b.conv("encoder.conv_in", q.ch, 3, 3);
  int block_in = q.ch;
  v.down.resize(static_cast<size_t>(levels));
  for (int i = 0; i < levels; ++i) {
    VqDownLevelW& L = v.down[static_cast<size_t>(i)];
    const std::string p = "encoder.down." + std::to_string(i);
    // taming in_ch_mult = (1,) + ch_mult: level i enters with ch*in_ch_mult[i] channels, which is the
    // previous level's output.
    const int block_out = q.ch * q.ch_mult[static_cast<size_t>(i)];
    for (int j = 0; j < q.num_res_blocks; ++j) {
      L.blocks.push_back(b.resnet(p + ".block." + std::to_string(j), block_in, block_out));
      block_in = block_out;
      // attn_resolutions [16] with resolution 256: attention only at the lowest-resolution level.
      if (i == levels - 1) L.attn.push_back(b.attn(p + ".attn." + std::to_string(j), block_in));
    }
    L.channels = block_in;
    if (i != levels - 1) L.downsample = b.conv(p + ".downsample.conv", block_in, block_in, 3);
  }
  v.mid_block_1 = b.resnet("encoder.mid.block_1", block_in, block_in);
  v.mid_attn_1 = b.attn("encoder.mid.attn_1", block_in);
  v.mid_block_2 = b.resnet("encoder.mid.block_2", block_in, block_in);
  v.norm_out = b.norm("encoder.norm_out", block_in);
  v.conv_out = b.conv("encoder.conv_out", q.z_channels, block_in, 3);
  v.quant_conv = b.conv("quant_conv", q.embed_dim, q.z_channels, 1);
  v.codebook = b.f32("quantize.embedding.weight", {q.n_embed, q.embed_dim});
  return v;
}

}  // namespace vtv::model
