// Model shapes. The canvas geometry is fixed by the method (224 px, 16 px patches, a 14x14 grid whose
// bottom-right 7x7 quadrant is masked); everything else comes from a preset or from the config stored
// in a weights file, so the same code runs ViT-L and the tiny test model.
#pragma once
#include <iterator>
#include <string>
#include <vector>

// The geometry constants (kImage, kPatch, kGrid, kHalf, kCell, kCellStart, the token counts
// kOneShotEncTokens = CLS + 147 visible patches, kOneShotDecTokens = CLS + 196 patches,
// kZeroShotEncTokens = CLS + 49 query patches, kZeroShotDecTokens = CLS + rows 7..13, kZeroShotShift:
// reduced position p>=1 is one-shot position p+98), the ImageNet normalisation and the preset rows,
// generated from src/model-constants.json.
#include "vtv/model_constants.h"

namespace vtv {

constexpr int kPatches = kGrid * kGrid;
static_assert(kHalf * 2 == kGrid && kPatch * kGrid == kImage, "src/model-constants.json: inconsistent canvas geometry");
static_assert(kOneShotEncTokens == 1 + kPatches - kHalf * kHalf && kOneShotDecTokens == 1 + kPatches,
              "src/model-constants.json: one-shot token counts do not match the grid");

// A default-constructed config is the first preset of src/model-constants.json (ViT-L, the released model).
inline constexpr const PresetRow& kDefaultPreset = kPresetRows[0];

struct VqganConfig {
  int embed_dim = kDefaultPreset.embed_dim;    // codebook vector width
  int n_embed = kDefaultPreset.n_embed;        // codebook size (= MAE vocab)
  int z_channels = kDefaultPreset.z_channels;  // post_quant_conv output / conv_in input
  int ch = kDefaultPreset.ch;                  // base channel count
  std::vector<int> ch_mult{std::begin(kDefaultPreset.ch_mult), std::end(kDefaultPreset.ch_mult)};  // level 0: full resolution
  int num_res_blocks = kDefaultPreset.num_res_blocks;  // the decoder has num_res_blocks + 1 blocks per level
  int groups = kDefaultPreset.groups;                  // GroupNorm groups
  float eps = kDefaultPreset.eps;                      // GroupNorm eps
  int levels() const { return static_cast<int>(ch_mult.size()); }
};

struct ModelConfig {
  std::string name = kDefaultPreset.name;
  int enc_dim = kDefaultPreset.enc_dim, enc_depth = kDefaultPreset.enc_depth, enc_heads = kDefaultPreset.enc_heads;
  int dec_dim = kDefaultPreset.dec_dim, dec_depth = kDefaultPreset.dec_depth, dec_heads = kDefaultPreset.dec_heads;
  int mlp_ratio = kDefaultPreset.mlp_ratio;
  float ln_eps = kDefaultPreset.ln_eps;
  VqganConfig vq;

  int vocab() const { return vq.n_embed; }
  int enc_head_dim() const { return enc_dim / enc_heads; }
  int dec_head_dim() const { return dec_dim / dec_heads; }
  int layers() const { return enc_depth + dec_depth; }
  // Throws vtv::Error naming the first inconsistent field.
  void validate() const;
};

// A preset of src/model-constants.json ("mae-vqgan-vit-large": the released model's shapes; "mini":
// the small trained model; "tiny": tests, demo). Throws on other names, listing the known ones.
ModelConfig preset(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace vtv
