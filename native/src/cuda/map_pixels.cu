// The VQGAN encoder's input mapping (docs/method.md#vqgan): an ImageNet-normalised canvas x back to the
// VQGAN's [-1, 1] range, 2 * (x * std + mean) - 1, written into a map whose channel count is padded to
// the convolution's multiple of 8 (the padding channels are written as zeros every time, so they meet
// conv_in's zero weight columns and add nothing).
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256;

__constant__ float kMean[3] = {0.485f, 0.456f, 0.406f};
__constant__ float kStd[3] = {0.229f, 0.224f, 0.225f};

__global__ void __launch_bounds__(THREADS)
map_pixels_kernel(const float* __restrict__ canvases, int64_t plane, int C, float* __restrict__ x) {
  const int64_t i = int64_t(blockIdx.x) * THREADS + threadIdx.x;
  if (i >= plane) return;
  const int c = blockIdx.y;
  const int64_t n = blockIdx.z;
  float v = 0.0f;
  if (c < 3) {
    // fmaf: the CPU reference (model::VqganEncoder, built with -march=native / x86-64-v3) contracts
    // x * std + mean into one FMA; 2 * t - 1 rounds the same fused or not (2 * t is exact).
    const float t = fmaf(canvases[(n * 3 + c) * plane + i], kStd[c], kMean[c]);
    v = 2.0f * t - 1.0f;
  }
  x[(n * C + c) * plane + i] = v;
}

}  // namespace

void map_pixels(const float* canvases, int64_t N, int64_t plane, int C, float* x, cudaStream_t stream) {
  check(N >= 0 && plane > 0 && C >= 3, "map_pixels: needs N >= 0, plane > 0 and at least 3 output channels, got C " +
                                           std::to_string(C));
  check(canvases != nullptr && x != nullptr, "map_pixels: canvases and x must be set");
  check(C <= 65535, "map_pixels: at most 65535 output channels");
  if (N == 0) return;
  check(N <= 65535, "map_pixels: at most 65535 samples per launch, got " + std::to_string(N));
  dim3 grid(static_cast<unsigned>((plane + THREADS - 1) / THREADS), static_cast<unsigned>(C), static_cast<unsigned>(N));
  VTV_LAUNCH("map_pixels_kernel", grid, THREADS, 0, stream, map_pixels_kernel, canvases, plane, C, x);
}

}  // namespace vtv::cuda
