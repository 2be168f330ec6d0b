// The CUDA kernels of the MAE forward, as host functions over device pointers, one family per .cu file:
//   gemm_f32.cu / gemm_bf16.cu  Linear layers (fused bias, exact GELU, residual add, argmax of each row)
//   layer_norm.cu               LayerNorm
//   patch_embed.cu              patch gathering and the token assembly around the encoder and decoder
//   attention.cu                multi-head attention with the task-vector patch, and capture sums
//                               (attention_mma.cu: its bf16 tensor-core variant)
//   argmax.cu                   argmax keys -> token grids
//   token_scores.cu             the token losses of each sample from its logits, on the device
// Each has a CPU counterpart in native/src/cpu (or native/src/model/mae.cc) that the tests compare to.
// Every function enqueues work on `stream` and returns; errors in arguments throw vtv::Error at once.
// This header includes no CUDA headers, so plain C++ (the engine, the tests) can call it.
#pragma once
#include <cstdint>

#include "cuda/device_buffer.h"
#include "vtv/engine.h"

namespace vtv::cuda {

enum class Epilogue { None, Gelu };

// y[M][N] = epilogue(x[M][K] * W[N][K]^T + bias[N]) (+ residual[M][N]), the PyTorch Linear.
// Exactly one of w_f32 / w_bf16 is set; it picks the path: fp32 FMA (parity) or bf16 tensor cores
// (fp32 accumulation), where the variant registry (variants.h) picks the kernel for the shape: the
// baseline reads x and rounds it to bf16 as it stages it, the pipelined variant reads x_bf16 (bf16 bit
// patterns of the same activations, written by the producer's epilogue), so a bf16 caller sets both
// when it can. y_bf16 (nullable): a bf16 copy of y for the next Linear. Requirements: K % 8 == 0, x,
// x_bf16 and W 16-byte aligned. residual may alias y (each element is read before it is written by the same thread);
// x must not alias y. y may be null when only argmax_keys is wanted.
// argmax_keys (nullable) [M]: each row's largest value and its first column, packed so that atomicMax
// finds the winner (see argmax.cuh); reset them with argmax_keys_reset first.
struct LinearArgs {
  const float* x = nullptr;
  const uint16_t* x_bf16 = nullptr;  // bf16 bit patterns
  int64_t M = 0, K = 0, N = 0;
  const float* w_f32 = nullptr;
  const uint16_t* w_bf16 = nullptr;  // bf16 bit patterns
  const float* bias = nullptr;
  float* y = nullptr;
  uint16_t* y_bf16 = nullptr;  // bf16 bit patterns
  Epilogue epilogue = Epilogue::None;
  const float* residual = nullptr;
  unsigned long long* argmax_keys = nullptr;
};
void linear(const LinearArgs& a, cudaStream_t stream = nullptr);
void linear_f32(const LinearArgs& a, cudaStream_t stream);
void linear_bf16(const LinearArgs& a, cudaStream_t stream);

// y[i] = bf16(x[i]), round to nearest even (as torch .to(bfloat16)).
void f32_to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t stream = nullptr);

// As cpu::layer_norm: two-pass mean and biased variance per row; y may alias x. y_bf16 (nullable): the
// same values rounded to bf16, for a Linear that reads bf16 activations.
void layer_norm(const float* x, int64_t rows, int64_t C, const float* gamma, const float* beta, float eps, float* y,
                cudaStream_t stream = nullptr, uint16_t* y_bf16 = nullptr);

// The per-sample patch of one layer, as cpu::HeadPatch (device pointers): bit (bit_offset + h*N + p) of
// sample b's mask (mask + b*mask_stride bytes; bit i at byte i>>3, bit i&7) replaces out[b][p][h][:] by
// means[p'][h][:], p' = p + position_shift for p >= 1, p' = 0 for p = 0.
struct HeadPatch {
  const uint8_t* mask = nullptr;
  int64_t mask_stride = 0;
  int64_t bit_offset = 0;
  const float* means = nullptr;
  int position_shift = 0;
};

// Queries the current device's shared-memory limits once and allows the attention kernels what they
// need; called before any graph capture (MaeCuda's constructor) so that captured launches make no
// attribute calls. mha_attention calls it too, so it is never required.
void mha_prepare();

// As cpu::mha_attention without capture: qkv [B][N][3*H*dh] (q | k | v, head-major) -> out [B][N][H*dh].
// N <= 256, dh in {8, 16, 32, 64}. patch may be null. Runs the "attention" kernel variant the tuning table
// names for the shape when it can run the call (variants.h, attention_variants.h), else the fp32 baseline.
void mha_attention(const float* qkv, int64_t B, int64_t N, int H, int dh, float scale, float* out,
                   const HeadPatch* patch, cudaStream_t stream = nullptr);

// Capture: sum[i] += sum over b of x[b*per_sample + i], for i < per_sample, summed in sample order
// (deterministic, unlike atomics in the attention kernel).
void add_batch_sum(const float* x, int64_t B, int64_t per_sample, float* sum, cudaStream_t stream = nullptr);

// Patch vectors of the visible patches: out[s*Np + t][c*256 + y*16 + x] =
//   canvases[canvas_of_sample[s]][c][16*(id/14) + y][16*(id%14) + x], id = patch_ids[t].
void gather_patches(const float* canvases, const int32_t* canvas_of_sample, int64_t samples, const int32_t* patch_ids,
                    int Np, float* out, cudaStream_t stream = nullptr);

// Encoder input: x[s][0] = cls + pos[0]; x[s][t] = embedded[s*(Ne-1) + t-1] + pos[1 + patch_ids[t-1]].
void assemble_encoder_tokens(const float* embedded, const float* cls, const float* pos, const int32_t* patch_ids,
                             int64_t samples, int Ne, int E, float* x, cudaStream_t stream = nullptr);

// Decoder input: x[s][0] = emb[s][0] + dpos[0]; x[s][t] = (slot_of_patch[id] >= 0 ? emb[s][slot] : mask_token)
// + dpos[1 + id], id = dec_patch_ids[t-1]. emb: [samples][Ne][D].
void assemble_decoder_tokens(const float* emb, int Ne, const float* mask_token, const float* dpos,
                             const int32_t* dec_patch_ids, const int32_t* slot_of_patch, int64_t samples, int Nd, int D,
                             float* x, cudaStream_t stream = nullptr);

// out[s][t-1][:] = x[s][t][:] for t >= 1: the decoder tokens that the prediction head reads.
void drop_cls_rows(const float* x, int64_t samples, int Nd, int D, float* out, cudaStream_t stream = nullptr);

// Argmax keys (see LinearArgs) and what they decode to.
void argmax_keys_reset(unsigned long long* keys, int64_t rows, cudaStream_t stream = nullptr);
void argmax_keys_to_index(const unsigned long long* keys, int64_t rows, int32_t* index, cudaStream_t stream = nullptr);
// tokens[s][q] = argmax of row s*P + (q % P), q < 196: the one-shot grid (P = 196) or the zero-shot
// hstack([y, y]) (P = 98).
void token_grid(const unsigned long long* keys, int64_t samples, int P, int32_t* tokens, cudaStream_t stream = nullptr);

// The token losses of model::score_tokens for n samples, one block each: logits [n][P][vocab] (P = 196
// one-shot, 98 zero-shot), grids [n][196] (token_grid's output: entry r < P is the argmax of logit row
// r), targets [n][49] output-quadrant tokens in [0, vocab). losses[n]: TokenCE, the mean over the 49
// positions of logsumexp(row) - row[target] (in double, as the CPU), or TokenAccuracy, minus the
// accuracy; metrics[n]: the accuracy. All pointers are device memory.
void token_scores(Loss loss, Mode mode, const float* logits, const int32_t* grids, int64_t n, int vocab,
                  const int32_t* targets, float* losses, float* metrics, cudaStream_t stream = nullptr);

}  // namespace vtv::cuda
