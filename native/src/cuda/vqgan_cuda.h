// The VQGAN decoder (docs/method.md#vqgan) and the per-sample losses (docs/method.md#metrics) on an NVIDIA GPU:
// the CUDA counterpart of model::VqganDecoder followed by model::score_cell. Token grids go in, pixels
// and/or (loss, metric) per score job come out; between them nothing leaves the device. Weights are
// uploaded once: bf16 copies of the convolution weights in bf16 mode (tensor cores, fp32 accumulation),
// fp32 copies in fp32 mode (the parity mode); biases, norms, the codebook table and conv_out stay fp32.
// post_quant_conv (1x1) is applied to the whole codebook at upload, so a token's first feature vector
// is one table row. GroupNorm statistics are accumulated by the convolution that produces a map and
// applied (with swish) by the one that reads it; nearest x2 upsampling is folded into the following
// convolution's indexing. The decode of a pass of n grids is captured as a CUDA graph per n and
// replayed (direct launches when capture fails or graphs are off).
// Work sharing: run() takes distinct grids from the caller and maps score jobs to them (any number of
// jobs per grid), so a grid shared by many samples is decoded once; distinct_grids() and run_shared()
// find the distinct grids themselves, on the device. Not thread-safe: one run at a time.
// This header includes no CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "model/weights_view.h"
#include "vtv/config.h"
#include "vtv/engine.h"

namespace vtv::cuda {

// Score job j compares decoded grid grid[j] with target target[j]. loss None: no scoring.
struct VqganScoreJobs {
  Loss loss = Loss::None;             // IoU or MSE
  int64_t count = 0;
  const int32_t* grid = nullptr;      // host [count], each in [0, grids)
  const int32_t* target = nullptr;    // host [count], each in [0, num_targets)
  const uint8_t* targets = nullptr;   // [num_targets][3][111][111] bytes (model::canvas_target's layout)
  int64_t num_targets = 0;
  bool targets_on_device = false;     // targets is a device pointer (then it is read in place)
};

struct VqganCudaOutputs {  // host pointers, each written when non-null
  float* pixels = nullptr;   // [grids][3][224][224] in [0, 1]
  float* losses = nullptr;   // [count]: -IoU or MSE
  float* metrics = nullptr;  // [count]: IoU or MSE
};

class VqganCuda {
 public:
  // max_chunk: grids per device pass (device memory: about device_bytes_per_sample() each).
  // use_graphs: capture each pass size as a CUDA graph and replay it.
  // nhwc: in bf16, keep the feature maps bf16 NHWC end to end (GroupNorm once per element, every conv on
  // the conv_nhwc variants) when the device runs those kernels (sm_80+) and every width is a multiple of
  // 8; false keeps today's fp32 NCHW maps (the bf16 3x3 conv variants then read them). fp32 is always NCHW.
  VqganCuda(const ModelConfig& config, const model::VqganDecoderW& weights, Precision precision, int max_chunk = 32,
            bool use_graphs = true, bool nhwc = true);
  ~VqganCuda();
  VqganCuda(const VqganCuda&) = delete;
  VqganCuda& operator=(const VqganCuda&) = delete;

  // tokens: host [grids][196], raster order, each in [0, n_embed) (a token outside writes NaN pixels).
  void run(const int32_t* tokens, int64_t grids, const VqganScoreJobs& scores, const VqganCudaOutputs& out);
  // The same with tokens already on the device ([grids][196] int32, e.g. MaeCuda's argmax grids).
  void run_device(const int32_t* tokens_device, int64_t grids, const VqganScoreJobs& scores,
                  const VqganCudaOutputs& out);

  // The engine's decode in two steps, for `sources` token grids already on the device ([sources][196]
  // int32, e.g. MaeCuda's tokens_device, which must stay in place until the decode). distinct_grids
  // numbers the distinct ones in order of first occurrence (with dedupe, found on the device by
  // grid_dedupe; without, source s is grid s), writes each source's grid to grid_of_source (host,
  // [sources], nullable) and returns their count. decode_distinct then decodes distinct grids
  // [first, first + grids) as run_device does (scores.grid[j] in [0, grids), relative to `first`).
  int64_t distinct_grids(const int32_t* tokens_device, int64_t sources, bool dedupe, int32_t* grid_of_source);
  void decode_distinct(int64_t first, int64_t grids, const VqganScoreJobs& scores, const VqganCudaOutputs& out);

  // Both steps at once, with score jobs that name a source (scores.grid[j] in [0, sources)): only the
  // count of distinct grids, the losses and metrics, and (when asked) the pixels come back. Returns the
  // number of grids decoded; grid_of_source (host, [sources], nullable) receives each source's grid, the
  // row of out.pixels ([grids][3][224][224]) that holds its image.
  int64_t run_shared(const int32_t* tokens_device, int64_t sources, bool dedupe, const VqganScoreJobs& scores,
                     const VqganCudaOutputs& out, int32_t* grid_of_source = nullptr);

  int max_chunk() const;

  Precision precision() const;
  bool nhwc() const;  // whether the maps are bf16 NHWC (see the constructor)
  size_t weight_bytes() const;
  int64_t device_bytes_per_sample() const;
  bool graphs_enabled() const;  // false when off, or after a capture failed (direct launches since)
  // "" unless a graph capture failed: then why (the step, the CUDA error, the pass key).
  const std::string& graph_capture_error() const;
  int graphs_captured() const;  // pass sizes with an instantiated graph

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vtv::cuda
