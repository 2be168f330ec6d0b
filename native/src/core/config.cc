#include "vtv/config.h"

#include "vtv/error.h"

namespace vtv {

void ModelConfig::validate() const {
  check(enc_dim > 0 && enc_depth > 0 && enc_heads > 0, "config: encoder sizes must be positive");
  check(dec_dim > 0 && dec_depth > 0 && dec_heads > 0, "config: decoder sizes must be positive");
  check(enc_dim % enc_heads == 0, "config: enc_dim must be a multiple of enc_heads");
  check(dec_dim % dec_heads == 0, "config: dec_dim must be a multiple of dec_heads");
  check(enc_dim % 4 == 0 && dec_dim % 4 == 0, "config: embedding widths must be multiples of 4 (sin-cos position embedding)");
  check(mlp_ratio > 0, "config: mlp_ratio must be positive");
  check(vq.n_embed > 1 && vq.embed_dim > 0 && vq.z_channels > 0 && vq.ch > 0, "config: vqgan sizes must be positive");
  check(vq.levels() == 5, "config: vqgan ch_mult must have 5 levels (14 px tokens -> 224 px needs 4 upsamplings)");
  check(vq.num_res_blocks > 0 && vq.groups > 0, "config: vqgan num_res_blocks and groups must be positive");
  for (int m : vq.ch_mult) {
    check(m > 0 && (vq.ch * m) % vq.groups == 0, "config: every vqgan level width ch*ch_mult must be a multiple of groups");
  }
}

ModelConfig preset(const std::string& name) {
  ModelConfig c;
  if (name == "mae-vqgan-vit-large") {
    c.validate();
    return c;
  }
  if (name == "mini") {
    // The small model trained by train/ and shipped in models/ (docs/model-card-mini.md).
    c.name = "mini";
    c.enc_dim = 128;
    c.enc_depth = 4;
    c.enc_heads = 4;
    c.dec_dim = 128;
    c.dec_depth = 3;
    c.dec_heads = 4;
    c.vq.embed_dim = 32;
    c.vq.n_embed = 512;
    c.vq.z_channels = 64;
    c.vq.ch = 8;
    c.vq.ch_mult = {1, 1, 2, 4, 8};
    c.vq.num_res_blocks = 1;
    c.vq.groups = 4;
    c.validate();
    return c;
  }
  if (name == "tiny") {
    c.name = "tiny";
    c.enc_dim = 64;
    c.enc_depth = 4;
    c.enc_heads = 4;
    c.dec_dim = 32;
    c.dec_depth = 2;
    c.dec_heads = 4;
    c.vq.embed_dim = 16;
    c.vq.n_embed = 64;
    c.vq.z_channels = 32;
    c.vq.ch = 8;
    c.vq.ch_mult = {1, 1, 2, 2, 4};
    c.vq.num_res_blocks = 1;
    c.vq.groups = 4;
    c.validate();
    return c;
  }
  throw Error("unknown model preset '" + name + "' (known: mae-vqgan-vit-large, mini, tiny)");
}

std::vector<std::string> preset_names() { return {"mae-vqgan-vit-large", "mini", "tiny"}; }

}  // namespace vtv
