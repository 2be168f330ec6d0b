// The VQGAN f16 encoder (docs/method.md#vqgan) on an NVIDIA GPU: the CUDA counterpart of
// model::VqganEncoder. ImageNet-normalised canvases go in, the 14x14 nearest-code token grid (and
// optionally the quant_conv latents) come out; between them nothing leaves the device. Weights are
// uploaded once, as VqganCuda does: bf16 copies of the convolution weights in bf16 mode (tensor cores,
// fp32 accumulation), fp32 copies in fp32 mode (the parity mode); biases, norms and the codebook stay fp32.
// The forward reuses the decoder's kernels: implicit-GEMM convolutions with the GroupNorm(+swish)
// prologue and output statistics, the pad-(0,1,0,1) stride-2 Downsample as a mode of the same conv, the
// 14x14 spatial attention, then nearest_code (exact distances in double, first index on ties, as the
// CPU). conv_in's 3 input channels are padded to 8 (zero weights, zero input channels) because the conv
// kernels load weight rows in 16-byte pieces.
// Not thread-safe: one encode at a time. This header includes no CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "model/weights_view.h"
#include "vtv/config.h"
#include "vtv/engine.h"  // Precision

namespace vtv::cuda {

class VqganEncoderCuda {
 public:
  // max_chunk: canvases per device pass (device memory: about device_bytes_per_sample() each).
  VqganEncoderCuda(const ModelConfig& config, const model::VqganEncoderW& weights, Precision precision,
                   int max_chunk = 16);
  ~VqganEncoderCuda();
  VqganEncoderCuda(const VqganEncoderCuda&) = delete;
  VqganEncoderCuda& operator=(const VqganEncoderCuda&) = delete;

  // canvases: host [n][3][224][224], ImageNet-normalised. tokens: host [n][196], raster order.
  // latents (optional): host [n][embed_dim][14][14], quant_conv's output before quantisation.
  void encode(const float* canvases, int64_t n, int32_t* tokens, float* latents = nullptr);

  Precision precision() const;
  size_t weight_bytes() const;
  int64_t device_bytes_per_sample() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace vtv::cuda
