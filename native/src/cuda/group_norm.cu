// GroupNorm applied from producer statistics as a standalone kernel: exactly what the convolution
// prologue does to each value it loads (group_norm.cuh), written out so that the tests can compare the
// statistics and the normalisation with cpu::group_norm separately from any convolution, and use it as
// the reference of the bf16 NHWC pass. No decoder runs it, and it is not a kernel variant: the registry's
// groupnorm family is group_norm_nhwc's (vec8, channel_regs).
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/group_norm.cuh"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

// One block per (sample, channel): the coefficients once, then the channel's HW values.
__global__ void group_norm_apply_kernel(const float* x, int C, int64_t HW, GroupNormIn g, float* y) {
  const int64_t nc = blockIdx.x;
  const int64_t n = nc / C;
  const int c = static_cast<int>(nc % C);
  float a, s;
  group_norm_coeffs(g, n, C, HW, c, a, s);
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) y[nc * HW + i] = group_norm_value(x[nc * HW + i], a, s, g.swish);
}

}  // namespace

void group_norm_apply(const float* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, float* y,
                      cudaStream_t stream) {
  check(N >= 0 && C > 0 && HW > 0, "group_norm_apply: sizes must be positive");
  check(norm.stats && norm.gamma && norm.beta, "group_norm_apply: stats, gamma and beta must be set");
  check(norm.groups > 0 && C % norm.groups == 0, "group_norm_apply: C " + std::to_string(C) +
                                                     " is not a multiple of groups " + std::to_string(norm.groups));
  check(N * C < (int64_t(1) << 31), "group_norm_apply: too many channels");
  if (N == 0) return;
  VTV_LAUNCH("group_norm_apply_kernel", static_cast<unsigned>(N * C), 256, 0, stream, group_norm_apply_kernel, x, C, HW,
             norm, y);
}

}  // namespace vtv::cuda
