// Attention on the CPU. mha_attention is the ViT multi-head attention with the task-vector patch applied
// in place (a patched head's output is replaced by its task mean, and its attention is never computed)
// and optional capture of the head outputs; spatial_attention is the VQGAN's single-head attention block.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace vtv::cpu {

// The per-sample patch for one layer. Bit (bit_offset + h*N + p) of sample b's mask
// (mask + b*mask_stride bytes; bit i at byte i>>3, bit i&7) says: replace O[b][p][h][:] by
// means[p'][h][:], where p' = p + position_shift for p >= 1 and p' = p for p = 0.
struct HeadPatch {
  const uint8_t* mask = nullptr;
  int64_t mask_stride = 0;
  int64_t bit_offset = 0;
  const float* means = nullptr;  // this layer's [one-shot tokens][H][dh]
  int position_shift = 0;
};

// qkv: [B][N][3*H*dh], laid out q | k | v, each head-major (channel h*dh + j).
// out: [B][N][H*dh] = softmax(q k^T * scale) v per head, head-major.
// patch (nullable): as above. capture (nullable): [N][H*dh] += sum over b of out[b] (after patching).
void mha_attention(ThreadPool& pool, const float* qkv, int64_t B, int64_t N, int H, int dh, float scale, float* out,
                   const HeadPatch* patch = nullptr, float* capture = nullptr);

// VQGAN AttnBlock core: q, k, v: [B][C][HW]; out[B][C][HW] with out[:, i] = sum_j softmax_j(q_i . k_j * C^-0.5) v_j.
void spatial_attention(ThreadPool& pool, const float* q, const float* k, const float* v, int64_t B, int64_t C,
                       int64_t HW, float* out);

}  // namespace vtv::cpu
