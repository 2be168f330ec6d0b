// The forward machinery the VQGAN decoder (VqganCuda) and encoder (VqganEncoderCuda) share on the device:
// a ring of three activation maps, each with the GroupNorm statistics its producer accumulated, the
// q/k/v and attention scratch, and the enqueueing of a convolution, a ResnetBlock, an AttnBlock and a
// resampling convolution on one stream, in either layout: fp32 NCHW maps, where GroupNorm (+ swish) runs
// as the consuming convolution's prologue, or (the bf16 decoder) bf16 NHWC maps, where it runs once per
// element in a pass of its own; both from the statistics the producing conv left (vqgan_kernels.h). Each
// model's State derives from it and
// adds its own ends (token lookup and conv_out for the decoder, map_pixels and quantisation for the
// encoder). No CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda/device_buffer.h"
#include "cuda/vqgan_device_weights.h"
#include "cuda/vqgan_kernels.h"
#include "vtv/config.h"
#include "vtv/engine.h"  // Precision

namespace vtv::cuda {

// How a convolution resamples its input (ConvArgs::upsample2x / downsample2x).
enum class Resample { None, Up2x, Down2x };

struct VqganDeviceBlocks {
  ModelConfig c;
  Precision precision;
  cudaStream_t stream = nullptr;
  int64_t max_elems = 0, max_attn = 0;  // per sample: largest feature map, largest attention map (C*HW)

  // Activations: the current map is ring[cur] (H x W), with its GroupNorm statistics in stats[cur]:
  // [n][groups][2]. Sized by reserve().
  DeviceBuffer<float> ring[3];
  DeviceBuffer<double> stats[3];
  DeviceBuffer<float> qkv, att;
  // bf16: the scratch of the conv variants that need one (conv2d_workspace_bytes; the nhwc variant's
  // normalised bf16 copy of a conv's input, at most max_elems per sample).
  DeviceBuffer<uint16_t> workspace;
  int cur = 0;
  int H = 0, W = 0;

  // The bf16 NHWC layout (set before reserve(); the decoder in bf16 on devices that run conv2d_nhwc):
  // the maps are map16[i] [n][H][W][C] instead of ring[i] (stats[] as above), GroupNorm (+ swish) runs
  // once per element into normed16, which the next conv reads as stored, and attention's scratch is
  // qkv16 / att16. Only the decoder's blocks (no Down2x).
  bool nhwc = false;
  DeviceBuffer<uint16_t> map16[3];
  DeviceBuffer<uint16_t> normed16, qkv16, att16;

  float* buf(int i) { return ring[i % 3].get(); }
  uint16_t* map(int i) { return map16[i % 3].get(); }
  double* st(int i) { return stats[i % 3].get(); }

  // The GroupNorm prologue of norm w over the map whose statistics are s.
  GroupNormIn gn(const DevNorm& w, const double* s, bool swish) const;
  // y = conv w of x (n samples at the current H x W, resampled as r) (+ residual), in the precision's form.
  void conv(const DevConv& w, const float* x, int64_t n, Resample r, float* y, const float* residual,
            const GroupNormIn& norm, double* stats_out);
  // The NHWC layout's steps: y = conv w of x (n samples at H x W, upsampled when up) (+ residual), and
  // normed16 = GroupNorm w (+ swish) of map i, whose statistics are st(i) (C channels at H x W).
  void conv_nhwc(const DevConv& w, const uint16_t* x, int64_t n, bool up, uint16_t* y, const uint16_t* residual,
                 double* stats_out);
  const uint16_t* normalise(int i, const DevNorm& w, bool swish, int C, int64_t n);
  // ResnetBlock: shortcut(x) + conv2(swish(GN2(conv1(swish(GN1(x)))))); the result becomes current.
  void resnet(const DevResnet& w, int64_t n);
  // AttnBlock: x + proj_out(attention(q, k, v of GN(x))), in place on the current map.
  void attention(const DevAttn& w, int64_t n);
  // The Upsample (Up2x) or Downsample (Down2x) conv of the current map into the next ring slot, which
  // becomes current; H and W follow.
  void resample(const DevConv& w, int64_t n, Resample r);

  // Sizes the ring, its statistics and the attention scratch for n samples (of max_elems, max_attn).
  void reserve(int64_t n);
  // Device bytes per sample of what reserve() allocates.
  int64_t bytes_per_sample() const;
};

}  // namespace vtv::cuda
