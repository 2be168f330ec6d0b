// Model shapes. The canvas geometry is fixed by the method (224 px, 16 px patches, a 14x14 grid whose
// bottom-right 7x7 quadrant is masked); everything else comes from a preset or from the config stored
// in a weights file, so the same code runs ViT-L and the tiny test model.
#pragma once
#include <string>
#include <vector>

namespace vtv {

constexpr int kImage = 224;        // canvas side in pixels
constexpr int kPatch = 16;         // patch side in pixels
constexpr int kGrid = 14;          // patches per side
constexpr int kPatches = 196;      // kGrid * kGrid
constexpr int kHalf = 7;           // quadrant side in patches
constexpr int kOneShotEncTokens = 148;  // CLS + 147 visible patches
constexpr int kOneShotDecTokens = 197;  // CLS + 196 patches
constexpr int kZeroShotEncTokens = 50;  // CLS + 49 query patches
constexpr int kZeroShotDecTokens = 99;  // CLS + rows 7..13 (query and output quadrants, interleaved per row)
constexpr int kZeroShotShift = 98;      // reduced position p>=1 is one-shot position p+98

struct VqganConfig {
  int embed_dim = 256;     // codebook vector width
  int n_embed = 1024;      // codebook size (= MAE vocab)
  int z_channels = 256;    // post_quant_conv output / conv_in input
  int ch = 128;            // base channel count
  std::vector<int> ch_mult{1, 1, 2, 2, 4};  // per level; level 0 is full resolution
  int num_res_blocks = 2;  // the decoder has num_res_blocks + 1 blocks per level
  int groups = 32;         // GroupNorm groups
  float eps = 1e-6f;       // GroupNorm eps
  int levels() const { return static_cast<int>(ch_mult.size()); }
};

struct ModelConfig {
  std::string name = "mae-vqgan-vit-large";
  int enc_dim = 1024, enc_depth = 24, enc_heads = 16;
  int dec_dim = 512, dec_depth = 8, dec_heads = 16;
  int mlp_ratio = 4;
  float ln_eps = 1e-6f;
  VqganConfig vq;

  int vocab() const { return vq.n_embed; }
  int enc_head_dim() const { return enc_dim / enc_heads; }
  int dec_head_dim() const { return dec_dim / dec_heads; }
  int layers() const { return enc_depth + dec_depth; }
  // Throws vtv::Error naming the first inconsistent field.
  void validate() const;
};

// "mae-vqgan-vit-large" (the released model's shapes) or "tiny" (tests, demo). Throws on other names.
ModelConfig preset(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace vtv
