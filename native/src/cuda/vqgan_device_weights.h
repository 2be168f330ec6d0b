// The VQGAN's weights on the device, shared by the decoder (VqganCuda) and the encoder
// (VqganEncoderCuda): a convolution's weight in the precision's form (fp32 copy in fp32 mode, bf16 copy
// in bf16 mode) with its fp32 bias, GroupNorm affines, and the ResnetBlock / AttnBlock built from them.
// An AttnBlock's q, k and v 1x1 convolutions are stacked into one [3C][C] conv (one GEMM for the three).
// `what` is the checkpoint name used in error messages. No CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/device_buffer.h"
#include "model/weights_view.h"
#include "vtv/engine.h"  // Precision

namespace vtv::cuda {

struct DevConv {
  DeviceBuffer<float> w32, b;
  DeviceBuffer<uint16_t> w16;
  DeviceBuffer<uint16_t> w16_taps;  // bf16 3x3 convs: w16 in tap-major order (ConvArgs::w_bf16_taps)
  int in = 0, out = 0, k = 1;
};

struct DevNorm {
  DeviceBuffer<float> gamma, beta;
};

struct DevResnet {
  DevNorm norm1, norm2;
  DevConv conv1, conv2, nin;
  bool has_nin = false;
};

struct DevAttn {
  DevNorm norm;
  DevConv qkv, proj;  // qkv: q, k and v stacked into one 1x1 conv [3C][C]
  int channels = 0;
};

// A host fp32 array on the device; throws naming `what` when host is null.
DeviceBuffer<float> upload_weight(const float* host, int64_t count, const std::string& what);
// w [out][in][k][k], b [out]: fp32 weight copy for F32, bf16 for BF16 (the bias stays fp32).
DevConv upload_conv_raw(const float* w, const float* b, int out, int in, int k, Precision p, const std::string& what);
DevConv upload_conv(const model::ConvW& w, Precision p, const std::string& what);
DevNorm upload_norm(const model::NormW& w, int64_t c, const std::string& what);
DevResnet upload_resnet(const model::ResnetBlockW& w, Precision p, const std::string& what);
DevAttn upload_attn(const model::AttnBlockW& w, Precision p, const std::string& what);

size_t conv_bytes(const DevConv& c);
size_t norm_bytes(const DevNorm& n);
size_t resnet_bytes(const DevResnet& r);
size_t attn_bytes(const DevAttn& a);

}  // namespace vtv::cuda
