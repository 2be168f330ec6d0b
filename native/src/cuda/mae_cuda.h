// The MAE encoder, decoder and prediction head (docs/method.md#model) on an NVIDIA GPU, with the per-sample
// task-vector patch and activation capture (docs/method.md#patching): the CUDA counterpart of model::MaeForward, taking
// the same MaeChunk (host pointers) and producing the same outputs plus the argmax token grids, which
// are computed on the GPU (argmax fused into the prediction head), and the token losses, scored on the
// GPU where the logits are (only one loss and one metric per sample come back). Weights are uploaded once, at
// construction: bf16 copies of every Linear weight in bf16 mode (tensor cores, fp32 accumulation), fp32
// copies in fp32 mode (the parity mode); biases, norms, embeddings stay fp32. A run makes no host round
// trip between its kernels: inputs go up at its start, requested outputs come down at its end. The
// kernels of a pass run on the object's own stream, captured once per pass shape as a CUDA graph.
// Not thread-safe: one run at a time per object. This header includes no CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "model/mae.h"
#include "vtv/config.h"
#include "vtv/engine.h"

namespace vtv::cuda {

struct MaeCudaOutputs {   // host pointers, each written when non-null; n = chunk.canvases.size()
  float* encoder_out = nullptr;  // [n][enc_tokens][enc_dim], after `norm`
  float* decoder_out = nullptr;  // [n][dec_tokens][dec_dim], after `decoder_norm` (CLS included)
  float* logits = nullptr;       // [n][dec_tokens-1][vocab]
  int32_t* tokens = nullptr;     // [n][196]: argmax grid; zero-shot duplicates the 98 predictions (hstack)
  // The same grids left on the device: a device pointer to [n][196] int32 (e.g. for VqganCuda::distinct_grids),
  // so a search step's tokens never visit the host.
  int32_t* tokens_device = nullptr;
};

// What a run takes from the device or scores there, beyond the MaeChunk.
struct MaeCudaRunOptions {
  // Task means already on the device ([means_enc_floats], [means_dec_floats], e.g. bound once by the
  // engine), read in place; when null, patching uploads the chunk's host tables.
  const float* means_enc_device = nullptr;
  const float* means_dec_device = nullptr;
  // The token losses (TokenCE, TokenAccuracy) of model::score_tokens, scored on the device from the
  // logits and the argmax grids: target_tokens host [n][49]; token_losses, token_metrics host [n].
  Loss token_loss = Loss::None;
  const int32_t* target_tokens = nullptr;
  float* token_losses = nullptr;
  float* token_metrics = nullptr;
};

class MaeCuda {
 public:
  // max_chunk: samples per device pass (bounds device memory: about device_bytes_per_sample each).
  // use_graphs: capture the kernels of a pass as a CUDA graph per pass shape (mode, samples, patching,
  // capture, logits) and replay it; passes that return encoder or decoder outputs run direct.
  MaeCuda(const ModelConfig& config, const model::MaeW& weights, Precision precision, int max_chunk = 256,
          bool use_graphs = true);
  ~MaeCuda();
  MaeCuda(const MaeCuda&) = delete;
  MaeCuda& operator=(const MaeCuda&) = delete;

  // Runs every sample of `chunk` (any count; split internally into passes of max_chunk). Patching and
  // capture follow MaeChunk: masks of patch_bytes(config, mode) per sample, means tables in one-shot
  // positions (or options' device tables), capture tables in the mode's positions, accumulated (+=) into.
  void run(const model::MaeChunk& chunk, const MaeCudaOutputs& out, const MaeCudaRunOptions& options = {});

  int max_chunk() const;

  Precision precision() const;
  size_t weight_bytes() const;                        // device memory held by the weights
  int64_t device_bytes_per_sample(Mode mode) const;   // activations per sample in one pass
  bool graphs_enabled() const;  // false when off, or after a capture failed (direct launches since)
  // "" unless a graph capture failed: then why (the step, the CUDA error, the pass key).
  const std::string& graph_capture_error() const;
  int graphs_captured() const;  // pass shapes with an instantiated graph

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vtv::cuda
