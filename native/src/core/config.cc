#include "vtv/config.h"

#include <iterator>

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

namespace {

ModelConfig from_row(const PresetRow& r) {
  ModelConfig c;
  c.name = r.name;
  c.enc_dim = r.enc_dim;
  c.enc_depth = r.enc_depth;
  c.enc_heads = r.enc_heads;
  c.dec_dim = r.dec_dim;
  c.dec_depth = r.dec_depth;
  c.dec_heads = r.dec_heads;
  c.mlp_ratio = r.mlp_ratio;
  c.ln_eps = r.ln_eps;
  c.vq.embed_dim = r.embed_dim;
  c.vq.n_embed = r.n_embed;
  c.vq.z_channels = r.z_channels;
  c.vq.ch = r.ch;
  c.vq.ch_mult.assign(std::begin(r.ch_mult), std::end(r.ch_mult));
  c.vq.num_res_blocks = r.num_res_blocks;
  c.vq.groups = r.groups;
  c.vq.eps = r.eps;
  c.validate();
  return c;
}

}  // namespace

ModelConfig preset(const std::string& name) {
  for (const PresetRow& r : kPresetRows) {
    if (name == r.name) return from_row(r);
  }
  std::string known;
  for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model preset '" + name + "' (known: " + known + ")");
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const PresetRow& r : kPresetRows) names.emplace_back(r.name);
  return names;
}

}  // namespace vtv
