// The MAE encoder and decoder at inference (docs/method.md#model), in one-shot or zero-shot mode (docs/method.md#zero-shot), for a
// chunk of samples at once, with the task-vector patch and activation capture applied inside every
// attention layer. Produces logits over the VQGAN codebook for the decoder's patch positions.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "model/cpu_model_count.h"
#include "model/weights_view.h"
#include "vtv/engine.h"

namespace vtv::model {

struct MaeChunk {
  Mode mode = Mode::ZeroShot;
  std::vector<const float*> canvases;  // per sample, [3][224][224] ImageNet-normalised
  // Patch (optional): masks of this chunk's samples, contiguous, patch_bytes(config, mode) each.
  const uint8_t* patch_masks = nullptr;
  const float* means_enc = nullptr;  // whole tables, layout as in engine.h
  const float* means_dec = nullptr;
  // Capture (optional): whole tables in the mode's own positions, accumulated into.
  float* capture_enc = nullptr;
  float* capture_dec = nullptr;
};

struct MaeOutputs {
  float* encoder_out = nullptr;  // [n][enc_tokens][enc_dim] or null
  float* decoder_out = nullptr;  // [n][dec_tokens][dec_dim] or null
  float* logits = nullptr;       // [n][dec_tokens-1][vocab], required
};

class MaeForward {
 public:
  MaeForward(const ModelConfig& config, const MaeW& weights);

  // Activation bytes per sample for `mode` (what run() allocates), for sizing chunks.
  int64_t bytes_per_sample(Mode mode) const;

  void run(ThreadPool& pool, const MaeChunk& chunk, const MaeOutputs& out);

 private:
  void block(ThreadPool& pool, const TransformerBlockW& w, int64_t n, int64_t N, int dim, int heads,
             const cpu::HeadPatch* patch, float* capture);

  // W [N][K] packed for the CPU GEMM, once, on first use (by weight pointer; ~ the MAE's weight bytes).
  const cpu::PackedLinear& packed(ThreadPool& pool, const float* w, int64_t N, int64_t K);

  const ModelConfig& c_;
  const MaeW& w_;
  std::unordered_map<const float*, cpu::PackedLinear> packed_;
  // Scratch, grown on demand and reused across chunks.
  std::vector<float> x_, h_, qkv_, o_, hidden_, patches_, enc_embedded_;
  CpuModelCount counted_;
};

}  // namespace vtv::model
