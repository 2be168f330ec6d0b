// Tokens -> the decoder's first feature map (docs/method.md#vqgan steps 2-3): the codebook lookup
// and post_quant_conv, which is 1x1 and so acts on each token's codebook vector alone; VqganCuda applies
// it to the whole codebook once, at upload, and this kernel gathers rows of that table into NCHW
// (codebook_lookup) or, for the bf16 NHWC decoder, into bf16 NHWC (codebook_lookup_nhwc), where a token's
// row is its pixel's channels: a straight copy of the row, rounded.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
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

// One thread per (sample, token, 8 channels), channels fastest: two 16-byte reads of the table row and
// one 16-byte write, consecutive threads on consecutive bytes of z. i = (n * kPatches + t) * C8 + c8.
__global__ void codebook_lookup_nhwc_kernel(const int32_t* __restrict__ tokens, int64_t vectors,
                                            const float4* __restrict__ table, int V, int C8, uint4* __restrict__ z) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= vectors) return;
  const int c8 = static_cast<int>(i % C8);
  const int32_t tok = tokens[i / C8];  // tokens [N][kPatches]: the flat index of (n, t) is i / C8
  uint4 o;
  if (tok >= 0 && tok < V) {
    const float4 a = __ldg(table + (int64_t(tok) * C8 + c8) * 2), b = __ldg(table + (int64_t(tok) * C8 + c8) * 2 + 1);
    o.x = pack_bf16x2(a.x, a.y);
    o.y = pack_bf16x2(a.z, a.w);
    o.z = pack_bf16x2(b.x, b.y);
    o.w = pack_bf16x2(b.z, b.w);
  } else {
    o.x = o.y = o.z = o.w = 0x7FC07FC0u;  // bf16 quiet NaN in both halves
  }
  z[i] = o;
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

void codebook_lookup_nhwc(const int32_t* tokens, int64_t N, const float* table, int V, int C, uint16_t* z,
                          cudaStream_t stream) {
  check(N >= 0 && V > 0 && C > 0, "codebook_lookup_nhwc: sizes must be positive");
  check(C % 8 == 0, "codebook_lookup_nhwc: C must be a multiple of 8 (16-byte vectors), got " + std::to_string(C));
  check(tokens && table && z, "codebook_lookup_nhwc: tokens, table and z must be set");
  check(reinterpret_cast<uintptr_t>(table) % 16 == 0 && reinterpret_cast<uintptr_t>(z) % 16 == 0,
        "codebook_lookup_nhwc: table and z must be 16-byte aligned");
  const int64_t vectors = N * kPatches * (C / 8);
  if (vectors == 0) return;
  VTV_LAUNCH("codebook_lookup_nhwc_kernel", static_cast<unsigned>((vectors + 255) / 256), 256, 0, stream,
             codebook_lookup_nhwc_kernel, tokens, vectors, reinterpret_cast<const float4*>(table), V, C / 8,
             reinterpret_cast<uint4*>(z));
}

}  // namespace vtv::cuda
