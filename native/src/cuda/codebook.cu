// Tokens -> the decoder's first feature map (docs/method.md#vqgan steps 2-3): the codebook lookup
// and post_quant_conv, which is 1x1 and so acts on each token's codebook vector alone; VqganCuda applies
// it to the whole codebook once, at upload, and this kernel gathers rows of that table into NCHW.
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

// One thread per (sample, channel, token), token fastest: coalesced writes; the table is small and cached.
__global__ void codebook_lookup_kernel(const int32_t* __restrict__ tokens, int64_t total, const float* __restrict__ table,
                                       int V, int C, float* __restrict__ z) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const int t = static_cast<int>(i % kPatches);
  const int64_t nc = i / kPatches;
  const int c = static_cast<int>(nc % C);
  const int64_t n = nc / C;
  const int32_t tok = tokens[n * kPatches + t];
  z[i] = (tok >= 0 && tok < V) ? __ldg(table + int64_t(tok) * C + c) : NAN;
}

}  // namespace

void codebook_lookup(const int32_t* tokens, int64_t N, const float* table, int V, int C, float* z, cudaStream_t stream) {
  check(N >= 0 && V > 0 && C > 0, "codebook_lookup: sizes must be positive");
  check(tokens && table && z, "codebook_lookup: tokens, table and z must be set");
  const int64_t total = N * C * kPatches;
  if (total == 0) return;
  VTV_LAUNCH("codebook_lookup_kernel", static_cast<unsigned>((total + 255) / 256), 256, 0, stream,
             codebook_lookup_kernel, tokens, total, table, V, C, z);
}

}  // namespace vtv::cuda
