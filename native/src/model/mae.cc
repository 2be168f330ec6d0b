#include "model/mae.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "model/token_layout.h"

namespace vtv::model {

namespace {

float* grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

constexpr int kPatchVec = 3 * kPatch * kPatch;  // a patch flattened as (channel, y, x), as Conv2d weights are

}  // namespace

MaeForward::MaeForward(const ModelConfig& config, const MaeW& weights) : c_(config), w_(weights) {}

int64_t MaeForward::bytes_per_sample(Mode mode) const {
  const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode);
  const int64_t E = c_.enc_dim, D = c_.dec_dim, R = c_.mlp_ratio;
  const int64_t enc = Ne * (E * 6 + E * R) + (Ne - 1) * kPatchVec;  // x, h, qkv(3), o, hidden, patches
  const int64_t dec = Nd * (D * 6 + D * R) + Ne * D;                 // same, plus the embedded encoder tokens
  const int64_t logits = (Nd - 1) * int64_t(c_.vocab());
  return (std::max(enc, dec) + logits) * int64_t(sizeof(float));
}

const cpu::PackedLinear& MaeForward::packed(ThreadPool& pool, const float* w, int64_t N, int64_t K) {
  auto it = packed_.find(w);
  if (it == packed_.end()) it = packed_.emplace(w, cpu::PackedLinear(pool, w, N, K)).first;
  return it->second;
}

void MaeForward::block(ThreadPool& pool, const TransformerBlockW& w, int64_t n, int64_t N, int dim, int heads,
                       const cpu::HeadPatch* patch, float* capture) {
  const int64_t rows = n * N;
  const int64_t hidden = int64_t(dim) * c_.mlp_ratio;
  const int dh = dim / heads;
  float* x = x_.data();
  float* h = grow(h_, rows * dim);
  float* qkv = grow(qkv_, rows * 3 * dim);
  float* o = grow(o_, rows * dim);
  float* hid = grow(hidden_, rows * hidden);
  cpu::layer_norm(pool, x, rows, dim, w.norm1.gamma, w.norm1.beta, c_.ln_eps, h);
  cpu::linear(pool, h, rows, dim, packed(pool, w.qkv.w, 3 * dim, dim), w.qkv.b, qkv);
  // timm: attn = (q @ k^T) * head_dim**-0.5, the Python double rounded to fp32 when it meets the tensor.
  const float scale = static_cast<float>(std::pow(double(dh), -0.5));
  cpu::mha_attention(pool, qkv, n, N, heads, dh, scale, o, patch, capture);
  cpu::linear(pool, o, rows, dim, packed(pool, w.proj.w, dim, dim), w.proj.b, x, cpu::Epilogue::None, x);
  cpu::layer_norm(pool, x, rows, dim, w.norm2.gamma, w.norm2.beta, c_.ln_eps, h);
  cpu::linear(pool, h, rows, dim, packed(pool, w.fc1.w, hidden, dim), w.fc1.b, hid, cpu::Epilogue::Gelu);
  cpu::linear(pool, hid, rows, hidden, packed(pool, w.fc2.w, dim, hidden), w.fc2.b, x, cpu::Epilogue::None, x);
}

void MaeForward::run(ThreadPool& pool, const MaeChunk& chunk, const MaeOutputs& out) {
  const Mode mode = chunk.mode;
  const int64_t n = static_cast<int64_t>(chunk.canvases.size());
  const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode);
  const int E = c_.enc_dim, D = c_.dec_dim, V = c_.vocab();
  const std::vector<int> enc_ids = encoder_patch_ids(mode);
  const std::vector<int> dec_ids = decoder_patch_ids(mode);
  const int64_t Np = static_cast<int64_t>(enc_ids.size());
  const int64_t mask_bytes = patch_bytes(c_, mode);
  const int64_t enc_bits = int64_t(c_.enc_depth) * c_.enc_heads * Ne;
  const int shift = mode == Mode::ZeroShot ? kZeroShotShift : 0;

  // ---- patch embedding of the visible patches, plus their position embeddings -----------------------
  float* patches = grow(patches_, n * Np * kPatchVec);
  pool.parallel_for(n * Np, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* canvas = chunk.canvases[static_cast<size_t>(r / Np)];
      const int id = enc_ids[static_cast<size_t>(r % Np)];
      const int py = (id / kGrid) * kPatch, px = (id % kGrid) * kPatch;
      float* dst = patches + r * kPatchVec;
      for (int ch = 0; ch < 3; ++ch) {
        for (int y = 0; y < kPatch; ++y) {
          std::memcpy(dst + (ch * kPatch + y) * kPatch, canvas + (int64_t(ch) * kImage + py + y) * kImage + px,
                      kPatch * sizeof(float));
        }
      }
    }
  });
  float* h = grow(h_, n * Ne * E);
  cpu::linear(pool, patches, n * Np, kPatchVec, packed(pool, w_.patch_w, E, kPatchVec), w_.patch_b, h);
  float* x = grow(x_, std::max(n * Ne * E, n * Nd * D));
  pool.parallel_for(n * Ne, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / Ne, t = r % Ne;
      float* dst = x + r * E;
      if (t == 0) {
        for (int j = 0; j < E; ++j) dst[j] = w_.cls_token[j] + w_.pos_embed[j];
      } else {
        const float* src = h + (b * Np + t - 1) * E;
        const float* pos = w_.pos_embed + int64_t(1 + enc_ids[static_cast<size_t>(t - 1)]) * E;
        for (int j = 0; j < E; ++j) dst[j] = src[j] + pos[j];
      }
    }
  });

  // ---- encoder ----------------------------------------------------------------------------------------
  for (int l = 0; l < c_.enc_depth; ++l) {
    cpu::HeadPatch patch;
    if (chunk.patch_masks) {
      patch.mask = chunk.patch_masks;
      patch.mask_stride = mask_bytes;
      patch.bit_offset = int64_t(l) * c_.enc_heads * Ne;
      patch.means = chunk.means_enc + int64_t(l) * kOneShotEncTokens * E;
      patch.position_shift = shift;
    }
    float* capture = chunk.capture_enc ? chunk.capture_enc + int64_t(l) * Ne * E : nullptr;
    block(pool, w_.blocks[static_cast<size_t>(l)], n, Ne, E, c_.enc_heads, chunk.patch_masks ? &patch : nullptr,
          capture);
  }
  x = x_.data();
  cpu::layer_norm(pool, x, n * Ne, E, w_.norm.gamma, w_.norm.beta, c_.ln_eps, x);
  if (out.encoder_out) std::memcpy(out.encoder_out, x, sizeof(float) * static_cast<size_t>(n * Ne * E));

  // ---- encoder -> decoder: embed, put mask tokens at the hidden patches, un-shuffle, add positions --
  // Zero-shot (docs/method.md#zero-shot) scatters into 148 slots with zeros at 1..98 and then drops exactly those top-half
  // tokens again, so building the 99 kept tokens directly is the same computation.
  float* emb = grow(enc_embedded_, n * Ne * D);
  cpu::linear(pool, x, n * Ne, E, packed(pool, w_.decoder_embed.w, D, E), w_.decoder_embed.b, emb);
  std::vector<int> slot_of_patch(kPatches, -1);
  for (size_t i = 0; i < enc_ids.size(); ++i) slot_of_patch[static_cast<size_t>(enc_ids[i])] = static_cast<int>(i + 1);
  pool.parallel_for(n * Nd, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / Nd, t = r % Nd;
      float* dst = x + r * D;
      const float* src;
      const float* pos;
      if (t == 0) {
        src = emb + b * Ne * D;
        pos = w_.decoder_pos_embed;
      } else {
        const int id = dec_ids[static_cast<size_t>(t - 1)];
        const int slot = slot_of_patch[static_cast<size_t>(id)];
        src = slot >= 0 ? emb + (b * Ne + slot) * D : w_.mask_token;
        pos = w_.decoder_pos_embed + int64_t(1 + id) * D;
      }
      for (int j = 0; j < D; ++j) dst[j] = src[j] + pos[j];
    }
  });

  // ---- decoder ----------------------------------------------------------------------------------------
  for (int l = 0; l < c_.dec_depth; ++l) {
    cpu::HeadPatch patch;
    if (chunk.patch_masks) {
      patch.mask = chunk.patch_masks;
      patch.mask_stride = mask_bytes;
      patch.bit_offset = enc_bits + int64_t(l) * c_.dec_heads * Nd;
      patch.means = chunk.means_dec + int64_t(l) * kOneShotDecTokens * D;
      patch.position_shift = shift;
    }
    float* capture = chunk.capture_dec ? chunk.capture_dec + int64_t(l) * Nd * D : nullptr;
    block(pool, w_.decoder_blocks[static_cast<size_t>(l)], n, Nd, D, c_.dec_heads,
          chunk.patch_masks ? &patch : nullptr, capture);
  }
  x = x_.data();
  cpu::layer_norm(pool, x, n * Nd, D, w_.decoder_norm.gamma, w_.decoder_norm.beta, c_.ln_eps, x);
  if (out.decoder_out) std::memcpy(out.decoder_out, x, sizeof(float) * static_cast<size_t>(n * Nd * D));
  // decoder_pred on every token but CLS.
  for (int64_t b = 0; b < n; ++b) {
    cpu::linear(pool, x + (b * Nd + 1) * D, Nd - 1, D, packed(pool, w_.decoder_pred.w, V, D), w_.decoder_pred.b,
                out.logits + b * (Nd - 1) * V);
  }
}

}  // namespace vtv::model
